//! Sending file descriptors over the QMP socket with SCM_RIGHTS.
//!
//! The descriptors travel as ancillary data of the `sendmsg` that carries the start of the
//! command, so QEMU has them when it parses that command. The kernel duplicates them into QEMU;
//! the caller keeps its own copies.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Sends as much of `data` as the socket takes in one `sendmsg`, with `fds` attached, and returns
/// how many bytes went out; the caller writes the rest as plain data.
pub(crate) async fn send_with_fds(
    stream: &UnixStream,
    data: &[u8],
    fds: &[RawFd],
) -> io::Result<usize> {
    let socket = stream.as_raw_fd();
    let iov = [IoSlice::new(data)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    loop {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // MSG_NOSIGNAL: a closed peer is an error to report, not a SIGPIPE to die of.
            sendmsg::<()>(socket, &iov, &cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(written) => return Ok(written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(error) => return Err(error),
        }
    }
}
