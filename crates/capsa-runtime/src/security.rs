//! (security: to be written)
