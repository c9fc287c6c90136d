"""Run every benchmark: ``python -m benchmarks`` (or ``make bench``); figures go to
``benchmarks/results/<date>-<machine>.json``."""

from benchmarks import (
    bench_balancing,
    bench_captions,
    bench_growth,
    bench_overhead,
    bench_planning,
    bench_scale,
    bench_topup,
    bench_training,
    bench_verify,
)

if __name__ == "__main__":
    bench_planning.main()
    bench_verify.main()
    bench_captions.main()
    bench_overhead.main()
    bench_growth.main()
    bench_training.main()
    bench_balancing.main()
    bench_topup.main()
    bench_scale.main()  # the longest: about 40 minutes on 2 cores
