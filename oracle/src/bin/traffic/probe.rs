//! A self-check of the per-packet join: one stray TCP ACK from A to B (port 9 to port 9, no
//! connection), which A's conntrack (with `nf_conntrack_tcp_loose=0`) must call invalid and
//! mark, and refwatch (with the same switch) must call invalid too. The forwarder reports it
//! and does not deliver it; A's nftables rules keep it out of every other counter.

use crate::error::{Context, Result};
use crate::lab::{A_ADDR, B_ADDR};
use crate::netns::Netns;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Source and destination port of the probe.
pub const PROBE_PORT: u16 = 9;

/// What the forwarder saw of the probe.
#[derive(Clone, Debug)]
pub struct ProbeResult {
    /// A's output chain marked it invalid.
    pub kernel_invalid: bool,
    /// refwatch's verdict: `Err(reason)` when it called the probe invalid.
    pub refwatch: std::result::Result<String, String>,
}

/// The probe's TCP header: ACK only, checksum over the IPv4 pseudo-header.
fn segment() -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&PROBE_PORT.to_be_bytes());
    h[2..4].copy_from_slice(&PROBE_PORT.to_be_bytes());
    h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes()); // seq
    h[8..12].copy_from_slice(&0x0bad_cafeu32.to_be_bytes()); // ack
    h[12] = 5 << 4; // data offset: 5 words
    h[13] = 0x10; // ACK
    h[14..16].copy_from_slice(&1024u16.to_be_bytes()); // window
    let mut sum: u32 = 0;
    for w in A_ADDR.octets().chunks(2).chain(B_ADDR.octets().chunks(2)) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    sum += 6 + h.len() as u32; // protocol, TCP length
    for w in h.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    h[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    h
}

/// Sends the probe from a raw socket in A.
pub fn send(a: &Netns) -> Result<()> {
    a.run(|| {
        // SAFETY: socket takes three integers and returns a new descriptor or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::IPPROTO_TCP,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error()).context("raw TCP socket in A for the probe");
        }
        // SAFETY: `raw` is a descriptor socket just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let seg = segment();
        let to = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(B_ADDR.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: the buffer and the address are live for the call and their lengths are
        // exactly theirs; the fd is open.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                seg.as_ptr().cast(),
                seg.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("sending the probe");
        }
        Ok(())
    })
}
