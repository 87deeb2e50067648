//! ctnetlink over a raw netlink socket: flushing the kernel's connection table of the current
//! network namespace between batches of sequences.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLMSG_ERROR: u16 = 2;
const NFNETLINK_V0: u8 = 0;

/// A NETLINK_NETFILTER socket.
#[derive(Debug)]
pub struct CtNetlink {
    fd: OwnedFd,
    seq: u32,
}

/// The flush request: an nlmsghdr and an nfgenmsg for AF_INET, no attributes.
pub fn flush_message(seq: u32) -> Vec<u8> {
    let len: u32 = 16 + 4;
    let mut m = Vec::with_capacity(len as usize);
    m.extend_from_slice(&len.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel assigns ours
    m.push(libc::AF_INET as u8);
    m.push(NFNETLINK_V0);
    m.extend_from_slice(&0u16.to_be_bytes()); // res_id
    m
}

/// The error code of an NLMSG_ERROR answer to `seq` (0 is an ACK), or `None` if `buf` is
/// some other message.
pub fn ack_code(buf: &[u8], seq: u32) -> Option<i32> {
    if buf.len() < 20 {
        return None;
    }
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    let got = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if ty != NLMSG_ERROR || got != seq {
        return None;
    }
    Some(i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]))
}

impl CtNetlink {
    /// Opens the socket (in the current network namespace).
    pub fn open() -> io::Result<CtNetlink> {
        // SAFETY: plain socket(2) call with constant arguments; no memory is passed.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("socket(AF_NETLINK, NETLINK_NETFILTER): {e}"),
            ));
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CtNetlink { fd, seq: 1 })
    }

    /// Deletes every IPv4 entry of the namespace's table and waits for the kernel's ACK.
    pub fn flush(&mut self) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let msg = flush_message(seq);
        // SAFETY: `msg` is a live buffer of `msg.len()` bytes; a null address with length 0
        // sends to the socket's default peer, the kernel, for a netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("ctnetlink flush send: {e}"),
            ));
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()` bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("ctnetlink flush recv: {e}"),
                ));
            }
            let got = &buf[..n as usize];
            match ack_code(got, seq) {
                Some(0) => return Ok(()),
                Some(code) => {
                    return Err(io::Error::other(format!(
                        "ctnetlink flush refused: {}",
                        io::Error::from_raw_os_error(-code)
                    )))
                }
                None => continue,
            }
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn flush_message_layout() {
        let m = flush_message(7);
        assert_eq!(m.len(), 20);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 20);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0102);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x05);
        assert_eq!(m[16], libc::AF_INET as u8);
    }

    #[test]
    fn ack_parsing() {
        let mut a = vec![0u8; 36];
        a[0..4].copy_from_slice(&36u32.to_ne_bytes());
        a[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        a[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert_eq!(ack_code(&a, 9), Some(0));
        assert_eq!(ack_code(&a, 8), None);
        a[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_code(&a, 9), Some(-1));
        assert_eq!(ack_code(&a[..10], 9), None);
    }
}
