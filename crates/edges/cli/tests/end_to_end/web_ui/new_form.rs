//! (filled in by #27 part work)
