//! (rootfs: to be written)
