//! (spec: to be written)
