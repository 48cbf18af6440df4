//! (hooks: to be written)
