//! Tun devices: layer-3 interfaces whose packets a file descriptor reads and writes.
//!
//! A packet written to a tun fd enters the kernel's network stack as if received on that
//! interface (with `rx_batched` at 0 it is processed inside `write`); a packet the kernel
//! routes out of the interface is queued for `read` on the fd.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags (the rest is padding).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// One tun device, its fd non-blocking.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

impl Tun {
    /// Creates the tun device `name` (IFF_TUN | IFF_NO_PI: bare IP packets) in the current
    /// network namespace.
    pub fn create(name: &str) -> io::Result<Tun> {
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| ctx("opening /dev/net/tun", e))?;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes: a 16-byte name and a
        // union whose first member is the short flags word); `req` is a live, exclusively
        // borrowed value of that layout for the duration of the call, and `file` is open.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            return Err(ctx(
                &format!("ioctl(TUNSETIFF, {name})"),
                io::Error::last_os_error(),
            ));
        }
        Ok(Tun {
            file,
            name: name.to_string(),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Injects one IP packet into the stack, as received on this interface.
    pub fn send(&self, packet: &[u8]) -> io::Result<()> {
        let n = (&self.file).write(packet).map_err(|e| {
            io::Error::new(e.kind(), format!("writing a packet to {}: {e}", self.name))
        })?;
        if n == packet.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "short write to {}: {n} of {} bytes",
                self.name,
                packet.len()
            )))
        }
    }

    /// Reads one packet the stack sent out of this interface, or `None` if none is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match (&self.file).read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("reading from {}: {e}", self.name),
            )),
        }
    }

    /// Waits until a packet is queued or `timeout` passes; says whether one is.
    pub fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        loop {
            // SAFETY: `pfd` is one valid, exclusively borrowed pollfd and we pass count 1.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc >= 0 {
                return Ok(rc > 0 && pfd.revents & libc::POLLIN != 0);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(
                    e.kind(),
                    format!("poll on {}: {e}", self.name),
                ));
            }
        }
    }
}
