//! (state: to be written)
