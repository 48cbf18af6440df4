//! (console: to be written)
