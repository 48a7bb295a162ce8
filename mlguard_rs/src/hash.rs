//! SHA-256 of files, streamed through a fixed buffer (for the CycloneDX SBOM's artifact hashes).
//!
//! Plain Rust, no Python: the bindings in `lib.rs` call [`sha256_file`] and [`sha256_files`]
//! (several files on several threads) with the GIL released.
//!
//! The compression function is the `sha2` crate's: on x86/x86_64 it checks the CPU once at run time
//! (`cpufeatures`, CPUID) and uses the SHA extensions (SHA-NI) when present, the portable code
//! otherwise; on aarch64 likewise with the ARMv8 SHA2 instructions. No build flag is needed.
//!
//! A file is read with plain `read(2)` calls into a reused per-thread buffer of [`BUF_SIZE`]
//! bytes, so memory does not depend on the file's size (a sparse multi-GiB file costs the buffer,
//! nothing more). The digest is of the bytes the reads returned: a file that grows or shrinks
//! while it is hashed gives the hash of what was read, never an error.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};

/// Bytes read per `read(2)` call (1 MiB): large enough that the system call and copy cost is
/// negligible next to hashing, small enough to stay in the per-core caches.
pub const BUF_SIZE: usize = 1 << 20;

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

thread_local! {
    /// One read buffer per thread, reused across files (a project tree has many small files).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// SHA-256 of everything `reader` returns until end of file, read through `buf` (any non-empty
/// size). `Interrupted` reads are retried; any other read error is returned.
pub fn sha256_reader<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<Sha256Digest> {
    assert!(!buf.is_empty(), "sha256_reader needs a non-empty buffer");
    let mut hasher = Sha256::new();
    loop {
        match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

/// SHA-256 of the file at `path`, streamed through this thread's [`BUF_SIZE`] buffer.
///
/// Errors are those of opening and reading (a directory opens on Unix but its first read fails
/// with `EISDIR`, so it is an error too).
pub fn sha256_file(path: &Path) -> io::Result<Sha256Digest> {
    let mut file = File::open(path)?;
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() != BUF_SIZE {
                buf.resize(BUF_SIZE, 0);
            }
            sha256_reader(&mut file, &mut buf)
        }
        // Only reachable through re-entrancy, which nothing here does; stay correct anyway.
        Err(_) => sha256_reader(&mut file, &mut vec![0u8; BUF_SIZE]),
    })
}

/// SHA-256 of the file at `path` as 64 lowercase hexadecimal digits.
pub fn sha256_file_hex(path: &Path) -> io::Result<String> {
    sha256_file(path).map(|d| to_hex(&d))
}

/// [`sha256_file`] of each of `paths`, in order, computed by up to `jobs` threads (the calling
/// thread is one of them). Threads take the next file as they finish one, so a few big files and
/// many small ones spread evenly. An error is that file's result and does not stop the others.
pub fn sha256_files<P: AsRef<Path> + Sync>(
    paths: &[P],
    jobs: usize,
) -> Vec<io::Result<Sha256Digest>> {
    let workers = jobs.clamp(1, paths.len().max(1));
    if workers == 1 {
        return paths.iter().map(|p| sha256_file(p.as_ref())).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(i) else { break };
            done.push((i, sha256_file(path.as_ref())));
        }
        done
    };
    let mut results: Vec<Option<io::Result<Sha256Digest>>> = paths.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        // A thread that cannot be started (resource limits) only means less parallelism.
        let helpers: Vec<_> = (1..workers)
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, work).ok())
            .collect();
        let mut all = work();
        for helper in helpers {
            all.extend(
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            );
        }
        for (i, result) in all {
            results[i] = Some(result);
        }
    });
    results
        .into_iter()
        .map(|r| r.expect("every index is taken by exactly one thread"))
        .collect()
}

/// Lowercase hexadecimal of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex_of(data: &[u8]) -> String {
        let mut r = data;
        to_hex(&sha256_reader(&mut r, &mut [0u8; 4096]).unwrap())
    }

    /// A reader that returns its data in pieces of the given sizes (cycled), with an
    /// `Interrupted` error before each piece.
    struct Choppy<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        step: usize,
        interrupt: bool,
    }

    impl Read for Choppy<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.interrupt {
                self.interrupt = false;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            self.interrupt = true;
            let want = self.sizes[self.step % self.sizes.len()].max(1);
            self.step += 1;
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Deterministic pseudo-random bytes (xorshift64*).
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn nist_vectors() {
        // FIPS 180-2 appendix B / NIST CSRC examples.
        assert_eq!(
            hex_of(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_of(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex_of(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            hex_of(
                b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno\
                  ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
            ),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
        );
        assert_eq!(
            hex_of(&vec![b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn chunking_does_not_change_the_digest() {
        let data = noise(3 * 64 * 1024 + 17, 42);
        let whole = hex_of(&data);
        for buf_len in [
            1usize,
            63,
            64,
            65,
            127,
            4096,
            65_537,
            data.len(),
            data.len() + 1,
        ] {
            let mut r = &data[..];
            let got = to_hex(&sha256_reader(&mut r, &mut vec![0u8; buf_len]).unwrap());
            assert_eq!(got, whole, "buffer of {buf_len} bytes");
        }
        for sizes in [&[1usize, 2, 3][..], &[55, 56, 57, 63, 64, 65], &[1000, 1]] {
            let mut r = Choppy {
                data: &data,
                sizes,
                step: 0,
                interrupt: true,
            };
            let got = to_hex(&sha256_reader(&mut r, &mut vec![0u8; 4096]).unwrap());
            assert_eq!(got, whole, "short reads {sizes:?}");
        }
    }

    #[test]
    fn read_errors_are_returned() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let err = sha256_reader(&mut Broken, &mut [0u8; 16]).unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("mlguard-hash-{}-{name}", std::process::id()))
    }

    #[test]
    fn files_at_buffer_boundaries() {
        let data = noise(2 * BUF_SIZE + 1, 7);
        for len in [
            0,
            1,
            64,
            BUF_SIZE - 1,
            BUF_SIZE,
            BUF_SIZE + 1,
            2 * BUF_SIZE,
            2 * BUF_SIZE + 1,
        ] {
            let path = temp_path(&format!("len{len}"));
            File::create(&path)
                .unwrap()
                .write_all(&data[..len])
                .unwrap();
            let got = sha256_file_hex(&path);
            std::fs::remove_file(&path).unwrap();
            assert_eq!(got.unwrap(), hex_of(&data[..len]), "file of {len} bytes");
        }
    }

    #[test]
    fn missing_file_and_directory_are_errors() {
        let missing = temp_path("does-not-exist");
        let err = sha256_file(&missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);

        let dir = temp_path("dir");
        std::fs::create_dir_all(&dir).unwrap();
        let res = sha256_file(&dir);
        std::fs::remove_dir(&dir).unwrap();
        assert!(res.is_err(), "a directory must not hash");
    }

    #[test]
    fn many_files_in_order_with_errors_in_place() {
        let dir = temp_path("many");
        std::fs::create_dir_all(&dir).unwrap();
        let mut paths = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40usize {
            let path = dir.join(format!("f{i}"));
            if i % 7 == 3 {
                expected.push(None); // never created: NotFound
            } else {
                let big = if i % 10 == 0 { BUF_SIZE + 1 } else { 0 };
                let data = noise(i * 997 + big, i as u64 + 1);
                File::create(&path).unwrap().write_all(&data).unwrap();
                expected.push(Some(hex_of(&data)));
            }
            paths.push(path);
        }
        paths.push(dir.clone()); // a directory: an error too
        expected.push(None);
        for jobs in [0, 1, 2, 3, 64] {
            let got = sha256_files(&paths, jobs);
            assert_eq!(got.len(), paths.len());
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                match (g, e) {
                    (Ok(d), Some(hex)) => assert_eq!(&to_hex(d), hex, "file {i}, {jobs} jobs"),
                    (Err(_), None) => {}
                    _ => panic!("file {i}, {jobs} jobs: {g:?} vs {e:?}"),
                }
            }
        }
        assert!(sha256_files::<&Path>(&[], 4).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(to_hex(&[]), "");
    }
}
