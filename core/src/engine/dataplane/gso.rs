//! UDP segmentation and receive offload on the engine's own socket (Linux): one syscall carries
//! a run of equal-sized WireGuard datagrams to one endpoint, or brings back a run the kernel
//! coalesced from one sender. Per-packet syscalls were the data plane's ceiling (DESIGN 12).
//! Elsewhere (Apple) there is neither: [`OFFLOAD`] is false, receives bring one datagram and
//! the send batch goes out one datagram at a time, chosen at compile time.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

/// UDP GSO and GRO are Linux's (Android's kernel is Linux); other systems have neither.
pub(super) const OFFLOAD: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// linux/udp.h: per-send segment size (a u16 cmsg) and per-socket receive coalescing; libc
/// does not export them.
#[cfg(any(target_os = "linux", target_os = "android"))]
const UDP_SEGMENT: libc::c_int = 103;
#[cfg(any(target_os = "linux", target_os = "android"))]
const UDP_GRO: libc::c_int = 104;

/// The kernel's UDP_MAX_SEGMENTS (64 until Linux 6.9, 128 since): a send with more segments
/// fails with EINVAL, so stay at the older bound.
pub(super) const MAX_SEGMENTS: usize = 64;
/// Bytes of datagrams in one segmented send: the IP length field's 65535 less an IPv6 header
/// (40) and the UDP header (8), rounded down; IPv4's headers are smaller.
pub(super) const MAX_SEND_BYTES: usize = 65_000;
/// A coalesced receive is at most one maximal UDP payload.
pub(super) const MAX_RECV_BYTES: usize = u16::MAX as usize;

/// Room for one control message carrying an int: CMSG_SPACE(4) is 24 bytes on 64-bit Linux,
/// 16 on 32-bit. Words, so the buffer is aligned for `cmsghdr`.
const CONTROL_WORDS: usize = 4;
type Control = [u64; CONTROL_WORDS];
// SAFETY: CMSG_SPACE only computes a size.
const _: () =
    assert!(unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize <= size_of::<Control>());

/// One read: `len` bytes from `from`, in segments of `segment` bytes (the last may be shorter)
/// when the kernel coalesced several datagrams, else one datagram.
#[derive(Debug, Clone, Copy)]
pub(super) struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub segment: Option<usize>,
}

/// Asks the kernel to coalesce received datagrams of one flow (UDP_GRO).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn enable_gro(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` lives across the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            UDP_GRO,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No receive offload outside Linux.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn enable_gro(_fd: RawFd) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Reads one (possibly coalesced) datagram into `buf` without waiting.
pub(super) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut control: Control = [0; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: every pointer in `msg` (address storage, one iovec over `buf`, `control`) is
    // valid for the lengths given for the duration of recvmsg; `try_init` hands us storage
    // and its length to fill. The control messages are read only within `msg_controllen`.
    let ((len, flags, segment), addr) = unsafe {
        SockAddr::try_init(|storage, storage_len| {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = storage.cast();
            msg.msg_namelen = *storage_len;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<Control>() as _;
            let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
            let Ok(n) = usize::try_from(n) else {
                return Err(io::Error::last_os_error());
            };
            *storage_len = msg.msg_namelen;
            Ok((n, msg.msg_flags, gro_segment(&msg)))
        })?
    };
    if flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "datagram larger than the receive buffer",
        ));
    }
    let Some(from) = addr.as_socket() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sender is not an IP address",
        ));
    };
    Ok(Received { len, from, segment })
}

/// The UDP_GRO segment size among `msg`'s control messages, if the kernel coalesced.
///
/// # Safety
/// `msg` must come from a successful recvmsg whose control buffer is still alive.
#[cfg(any(target_os = "linux", target_os = "android"))]
unsafe fn gro_segment(msg: &libc::msghdr) -> Option<usize> {
    // SAFETY: the CMSG_* walk stays within msg_control..msg_controllen, as the kernel filled
    // it; each header is checked to hold an int before its data is read (unaligned read).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_UDP
                && c.cmsg_type == UDP_GRO
                && c.cmsg_len as usize >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize
            {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).ok().filter(|s| *s > 0);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    None
}

/// Outside Linux the kernel never coalesces.
///
/// # Safety
/// None needed; unsafe only to match the Linux signature.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
unsafe fn gro_segment(_msg: &libc::msghdr) -> Option<usize> {
    None
}

/// Sends `datagrams` to `to` as segments of `segment` bytes (the last may be shorter) in one
/// sendmsg with UDP_SEGMENT, without waiting. The kernel sends all or none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn send_segments(fd: RawFd, datagrams: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
    let segment = u16::try_from(segment).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let addr = SockAddr::from(to);
    let mut control: Control = [0; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: datagrams.as_ptr().cast_mut().cast(),
        iov_len: datagrams.len(),
    };
    // SAFETY: `msg` points at `addr`, one iovec over `datagrams` (which sendmsg only reads) and
    // `control`, all alive across the call. The control buffer holds CMSG_SPACE(int) ≥
    // CMSG_SPACE(u16) bytes (checked at compile time), so the first header is non-null and its
    // data fits.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr().cast_mut().cast();
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// No segmentation offload outside Linux: the batch never asks (its offload starts off).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn send_segments(
    _fd: RawFd,
    _datagrams: &[u8],
    _segment: usize,
    _to: SocketAddr,
) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Whether a failed segmented send means the kernel or device cannot segment (remember it and
/// send one datagram at a time from then on).
pub(super) fn offload_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP)
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    /// Segments sent in one call arrive as the same datagrams, coalesced or not.
    #[test]
    fn segmented_send_arrives_as_the_same_datagrams() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let gro = enable_gro(rx.as_raw_fd()).is_ok();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Ten full segments of 1000 bytes and a shorter last one, each filled with its index.
        let mut run = Vec::new();
        for i in 0..10u8 {
            run.extend(std::iter::repeat_n(i, 1000));
        }
        run.extend(std::iter::repeat_n(10u8, 300));
        match send_segments(tx.as_raw_fd(), &run, 1000, rx.local_addr().unwrap()) {
            Ok(()) => {}
            Err(e) if offload_unsupported(&e) => return println!("skipping: no UDP GSO here ({e})"),
            Err(e) => panic!("send: {e}"),
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut buf = vec![0u8; MAX_RECV_BYTES];
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 11 {
            assert!(
                Instant::now() < deadline,
                "only {} datagrams arrived (GRO {gro})",
                got.len()
            );
            match recv(rx.as_raw_fd(), &mut buf) {
                Ok(r) => {
                    assert_eq!(r.from, tx.local_addr().unwrap());
                    let data = &buf[..r.len];
                    got.extend(data.chunks(r.segment.unwrap_or(r.len)).map(<[u8]>::to_vec));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(got.len(), 11);
        for (i, d) in got.iter().enumerate() {
            let want = if i == 10 { 300 } else { 1000 };
            assert_eq!(d.len(), want, "datagram {i}");
            assert!(
                d.iter().all(|b| usize::from(*b) == i),
                "datagram {i} holds its own bytes"
            );
        }
    }
}
