//! Link settings of the `capsa-runc` binary (see src/runc_main.rs and docs/performance.md).
//!
//! `-z pack-relative-relocs` (binutils >= 2.38, glibc >= 2.36 reads DT_RELR): the PIE's ~8,600
//! R_X86_64_RELATIVE relocations shrink from 24 bytes each in `.rela.dyn` (about 200 KiB the
//! loader reads at every exec, so resident) to a bitmap of a few KiB. Engines exec capsa-runc
//! several times per container, so those pages count in its peak RSS and start time.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bin=capsa-runc=-Wl,-z,pack-relative-relocs");
    }
}
