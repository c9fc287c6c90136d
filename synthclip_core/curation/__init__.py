"""Curation: the concept bank and its safety screen, MetaCLIP balancing and the closed loop's rules."""
