//! capsa-image: images, the store and container snapshots.
