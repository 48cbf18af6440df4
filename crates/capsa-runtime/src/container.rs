//! (container: to be written)
