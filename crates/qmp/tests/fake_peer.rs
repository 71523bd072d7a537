//! Faults a real QEMU cannot be made to show, against a scripted peer on a Unix socket.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use vgashot_qmp::{Config, ConnectionLost, Error, ProtocolError, Qmp};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": "fake"}, "capabilities": []}}"#;

/// The QEMU side of a connection, played by the test.
struct Peer {
    stream: BufReader<UnixStream>,
}

impl Peer {
    async fn send(&mut self, line: &[u8]) {
        self.stream.get_mut().write_all(line).await.unwrap();
        self.stream.get_mut().write_all(b"\n").await.unwrap();
    }

    async fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Greets and accepts `qmp_capabilities`, as QEMU does.
    async fn handshake(&mut self) {
        self.send(GREETING.as_bytes()).await;
        let negotiate = self.recv().await;
        assert_eq!(negotiate["execute"], "qmp_capabilities");
        self.reply(&negotiate, json!({})).await;
    }

    async fn reply(&mut self, command: &Value, value: Value) {
        let reply = json!({"return": value, "id": command["id"]});
        self.send(reply.to_string().as_bytes()).await;
    }
}

/// A listening socket for one fake QEMU.
struct Fake {
    listener: UnixListener,
    path: std::path::PathBuf,
    _dir: TempDir,
}

impl Fake {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Self {
            listener,
            path,
            _dir: dir,
        }
    }

    /// Runs `script` as the peer of one connection while the client connects.
    async fn connect<F, Fut>(&self, config: Config, script: F) -> vgashot_qmp::Result<Qmp>
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = async {
            let (stream, _) = self.listener.accept().await.unwrap();
            // The peer lives on until the test's runtime ends.
            tokio::spawn(script(Peer {
                stream: BufReader::new(stream),
            }));
        };
        tokio::join!(Qmp::connect(&self.path, config), accept).0
    }
}

fn protocol_error(error: &Error) -> &ProtocolError {
    match error {
        Error::Disconnected(reason) => match &**reason {
            ConnectionLost::Protocol(protocol) => protocol,
            other => panic!("expected a protocol violation, got {other:?}"),
        },
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reply_with_an_id_never_sent_poisons_the_connection() {
    let fake = Fake::new();
    let qmp = fake
        .connect(Config::default(), |mut peer| async move {
            peer.handshake().await;
            let command = peer.recv().await;
            peer.reply(&json!({"id": 424242}), json!({})).await;
            // Never answer the real command.
            let _ = command;
            std::future::pending::<()>().await;
        })
        .await;
    let qmp = qmp.unwrap();
    let error = qmp.query_status().await.unwrap_err();
    assert!(matches!(
        protocol_error(&error),
        ProtocolError::UnexpectedId { id } if id == "424242"
    ));
    assert!(qmp.query_status().await.unwrap_err().is_disconnected());
}

#[tokio::test]
async fn a_one_mebibyte_reply_arrives_whole() {
    let fake = Fake::new();
    let big = "x".repeat(1 << 20);
    let expected = big.clone();
    let qmp = fake
        .connect(Config::default(), |mut peer| async move {
            peer.handshake().await;
            let command = peer.recv().await;
            peer.reply(&command, json!({"blob": big})).await;
            std::future::pending::<()>().await;
        })
        .await;
    let value = qmp.unwrap().execute("big", None).await.unwrap();
    assert_eq!(value["blob"].as_str().unwrap(), expected);
}

#[tokio::test]
async fn a_line_beyond_the_bound_is_refused() {
    let fake = Fake::new();
    let config = Config {
        max_line_bytes: 64 * 1024,
        ..Config::default()
    };
    let qmp = fake
        .connect(config, |mut peer| async move {
            peer.handshake().await;
            let _command = peer.recv().await;
            // An endless line: the client must give up at its bound, not buffer forever.
            let chunk = vec![b'x'; 16 * 1024];
            while peer.stream.get_mut().write_all(&chunk).await.is_ok() {}
        })
        .await;
    let error = qmp.unwrap().execute("big", None).await.unwrap_err();
    assert!(matches!(
        protocol_error(&error),
        ProtocolError::LineTooLong { limit: 65536 }
    ));
}

#[tokio::test]
async fn garbage_bytes_fail_the_connection_without_a_panic() {
    let fake = Fake::new();
    let qmp = fake
        .connect(Config::default(), |mut peer| async move {
            peer.handshake().await;
            let _command = peer.recv().await;
            peer.send(b"\x00\xff\xfe{garbage").await;
            std::future::pending::<()>().await;
        })
        .await;
    let error = qmp.unwrap().query_status().await.unwrap_err();
    assert!(matches!(protocol_error(&error), ProtocolError::Json(_)));
}

#[tokio::test]
async fn a_greeting_that_never_comes_times_out() {
    let fake = Fake::new();
    let config = Config {
        handshake_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let started = Instant::now();
    let qmp = fake
        .connect(config, |peer| async move {
            // Hold the connection open and say nothing.
            let _peer = peer;
            std::future::pending::<()>().await
        })
        .await;
    assert!(matches!(
        qmp.unwrap_err(),
        Error::HandshakeTimeout { after } if after == Duration::from_millis(200)
    ));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_peer_that_is_not_qmp_fails_the_handshake() {
    let fake = Fake::new();
    let qmp = fake
        .connect(Config::default(), |mut peer| async move {
            peer.send(br#"{"return": {}}"#).await;
        })
        .await;
    let Error::Handshake(inner) = qmp.unwrap_err() else {
        panic!("expected a handshake error");
    };
    assert!(matches!(
        *inner,
        Error::Protocol(ProtocolError::ExpectedGreeting { .. })
    ));

    let qmp = fake
        .connect(Config::default(), |peer| async move { drop(peer) })
        .await;
    let Error::Handshake(inner) = qmp.unwrap_err() else {
        panic!("expected a handshake error");
    };
    assert!(inner.is_disconnected());
}

#[tokio::test]
async fn a_timed_out_call_leaves_the_connection_usable() {
    let fake = Fake::new();
    let config = Config {
        command_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let qmp = fake
        .connect(config, |mut peer| async move {
            peer.handshake().await;
            let slow = peer.recv().await;
            let fast = peer.recv().await;
            // Answer the slow one long after its caller gave up, then the fast one.
            tokio::time::sleep(Duration::from_millis(300)).await;
            peer.reply(&slow, json!({"which": "slow"})).await;
            peer.reply(&fast, json!({"which": "fast"})).await;
            let next = peer.recv().await;
            peer.reply(&next, json!({"which": "next"})).await;
            std::future::pending::<()>().await;
        })
        .await;
    let qmp = qmp.unwrap();
    let slow = qmp.execute("slow", None);
    let fast = async {
        // Sent second, so its reply is also late: both time out.
        tokio::time::sleep(Duration::from_millis(10)).await;
        qmp.execute("fast", None).await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert!(matches!(slow, Err(Error::Timeout { ref command, .. }) if command == "slow"));
    assert!(matches!(fast, Err(Error::Timeout { .. })));
    // The late replies are dropped; the next call gets its own.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = qmp.execute("next", None).await.unwrap();
    assert_eq!(next, json!({"which": "next"}));
}

#[tokio::test]
async fn descriptors_travel_with_their_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qmp.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // A blocking peer, to read the ancillary data with recvmsg.
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        use std::io::{BufRead, Write};
        writeln!(stream, "{GREETING}").unwrap();
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let negotiate: Value = serde_json::from_str(&line).unwrap();
        writeln!(stream, "{}", json!({"return": {}, "id": negotiate["id"]})).unwrap();

        let mut buffer = vec![0; 4096];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = Vec::new();
        for cmsg in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                fds.extend(received);
            }
        }
        let length = message.bytes;
        let command: Value = serde_json::from_slice(&buffer[..length]).unwrap();
        writeln!(stream, "{}", json!({"return": {}, "id": command["id"]})).unwrap();
        // SAFETY: the kernel just created these descriptors for us.
        let fds: Vec<OwnedFd> = fds
            .into_iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        (command, fds)
    });

    let qmp = Qmp::connect(&path, Config::default()).await.unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    qmp.getfd("probe", std::os::fd::AsFd::as_fd(&write_end))
        .await
        .unwrap();
    let (command, fds) = peer.join().unwrap();
    assert_eq!(
        command,
        json!({"execute": "getfd", "arguments": {"fdname": "probe"}, "id": 1})
    );
    assert_eq!(
        fds.len(),
        1,
        "exactly one descriptor, in the command's own message"
    );
    // The descriptor the peer got is our pipe: what it writes, we read.
    nix::unistd::write(&fds[0], b"through").unwrap();
    let mut buffer = [0; 7];
    nix::unistd::read(&read_end, &mut buffer).unwrap();
    assert_eq!(&buffer, b"through");
}
