//! Layer-3 tun devices (`IFF_TUN | IFF_NO_PI`): each read returns one IP packet, each write
//! injects one.

use crate::error::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (a short) in the union.
#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    /// The rest of the 24-byte union.
    _pad: [u8; 22],
}

/// An open tun device. The device exists while this handle is open (it is not persistent)
/// and lives in the namespace of the thread that created it.
#[derive(Debug)]
pub struct Tun {
    name: String,
    file: File,
}

impl Tun {
    /// Creates the device `name` in the calling thread's network namespace, non-blocking.
    pub fn create(name: &str) -> Result<Tun> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .context("opening /dev/net/tun")?;
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        let bytes = name.as_bytes();
        assert!(bytes.len() < libc::IFNAMSIZ, "interface name too long");
        req.name[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: TUNSETIFF reads (and writes back the chosen name into) a `struct ifreq`;
        // `req` is a live, exclusively borrowed buffer of that layout and size (40 bytes).
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("TUNSETIFF {name} (IFF_TUN|IFF_NO_PI)"));
        }
        Ok(Tun {
            name: name.to_string(),
            file,
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor, for `poll`.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Reads one packet; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Read;
        (&self.file).read(buf)
    }

    /// Injects one packet into the device's namespace.
    pub fn send(&self, pkt: &[u8]) -> io::Result<usize> {
        use std::io::Write;
        (&self.file).write(pkt)
    }
}
