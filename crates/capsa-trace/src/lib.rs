//! capsa-trace: records the capability checks of a container's process tree.
