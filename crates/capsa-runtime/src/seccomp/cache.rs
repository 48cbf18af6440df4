//! On-disk cache of compiled programs: compiling Docker's profile through libseccomp costs
//! milliseconds on every start (docs/performance.md), loading a cached program microseconds.
//!
//! Owns: files `<cache_dir>/<hash>.bpf`. Must not touch anything else in the cache dir's parent.
//!
//! A file holds the canonical JSON of the `LinuxSeccomp` it was compiled from, and a hit
//! requires the JSON to match byte for byte, so a hash collision or a foreign file can never
//! install the wrong filter; a torn or garbled file is a miss. Writes go to a temporary file
//! that is renamed into place (atomic on one filesystem).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;

use super::{SeccompError, SeccompFilter, compile};

const MAGIC: &[u8; 8] = b"CAPSASC1";

/// `compile`, through the cache in `cache_dir` (created if missing). Cache write failures are
/// logged, not returned: the compiled filter is still correct.
pub fn compile_cached(
    spec: &LinuxSeccomp,
    cache_dir: &Path,
) -> Result<SeccompFilter, SeccompError> {
    let canonical = serde_json::to_vec(spec)
        .map_err(|e| SeccompError::Unsupported(format!("cannot serialize the profile: {e}")))?;
    let path = cache_dir.join(format!("{:016x}.bpf", key(&canonical)));
    if let Some(f) = std::fs::read(&path)
        .ok()
        .and_then(|b| decode(&b, &canonical))
    {
        return Ok(f);
    }
    let filter = compile(spec)?;
    if let Err(e) = store(&path, cache_dir, &canonical, &filter) {
        tracing::debug!("seccomp cache: {e}");
    }
    Ok(filter)
}

/// The key also covers the libseccomp version and the target arch, which shape the program.
fn key(canonical: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    canonical.hash(&mut h);
    let v = libseccomp::ScmpVersion::current()
        .ok()
        .map(|v| (v.major, v.minor, v.micro));
    v.hash(&mut h);
    std::env::consts::ARCH.hash(&mut h);
    h.finish()
}

fn encode(canonical: &[u8], f: &SeccompFilter) -> Vec<u8> {
    let prog = f.to_bytes();
    let mut out = Vec::with_capacity(MAGIC.len() + 12 + canonical.len() + prog.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&f.flags.to_le_bytes());
    out.extend_from_slice(&(canonical.len() as u32).to_le_bytes());
    out.extend_from_slice(canonical);
    out.extend_from_slice(&(prog.len() as u32).to_le_bytes());
    out.extend_from_slice(&prog);
    out
}

fn decode(bytes: &[u8], canonical: &[u8]) -> Option<SeccompFilter> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (flags, rest) = take_u32(rest)?;
    let (json_len, rest) = take_u32(rest)?;
    let (json, rest) = rest.split_at_checked(json_len as usize)?;
    if json != canonical {
        return None;
    }
    let (prog_len, prog) = take_u32(rest)?;
    if prog.len() != prog_len as usize {
        return None;
    }
    SeccompFilter::from_bytes(prog, flags)
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = b.split_at_checked(4)?;
    Some((u32::from_le_bytes(head.try_into().ok()?), rest))
}

fn store(path: &Path, dir: &Path, canonical: &[u8], f: &SeccompFilter) -> Result<(), SeccompError> {
    let io = |op, path: &Path, source| SeccompError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp: PathBuf = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let result = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(&encode(canonical, f)))
        .map_err(|e| io("write", &tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| io("rename into", path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_hits_only_on_the_same_profile() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let first = compile_cached(&spec, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert_eq!(files.len(), 1, "one cache file, no temp left");
        let bytes = std::fs::read(files[0].path()).unwrap_or_default();
        let canonical = serde_json::to_vec(&spec).unwrap_or_default();
        assert_eq!(decode(&bytes, &canonical), Some(first.clone()));
        assert_eq!(decode(&bytes, b"{}"), None, "another profile never matches");
        assert_eq!(
            decode(&bytes[..bytes.len() - 1], &canonical),
            None,
            "torn file is a miss"
        );
        let again = compile_cached(&spec, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, first);
    }
}
