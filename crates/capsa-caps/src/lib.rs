//! capsa-caps: the capability model. Pure: no syscalls beyond reading /proc.
