//! The session against a scripted server: what QEMU sends, and the faults it cannot show
//! (short reads, rectangles outside the screen, encodings not asked for, a server that closes
//! or stalls in the middle of an update, pixels nobody asked for).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::{Event, Limits, RfbError, Session};

const LIMITS: Limits = Limits {
    max_pixels: 64,
    message_timeout: Duration::from_secs(5),
};

/// What QEMU says up to ServerInit for a `width` x `height` screen named `QEMU`.
fn greeting(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = b"RFB 003.008\n".to_vec();
    bytes.extend_from_slice(&[1, 1, 0, 0, 0, 0]);
    bytes.extend_from_slice(&width.to_be_bytes());
    bytes.extend_from_slice(&height.to_be_bytes());
    bytes.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    bytes.extend_from_slice(&[0, 0, 0, 4]);
    bytes.extend_from_slice(b"QEMU");
    bytes
}

/// A FramebufferUpdate header of `rects` rectangles.
fn update(rects: u16) -> Vec<u8> {
    let mut bytes = vec![0, 0];
    bytes.extend_from_slice(&rects.to_be_bytes());
    bytes
}

/// A rectangle header.
fn rect(x: u16, y: u16, width: u16, height: u16, encoding: i32) -> Vec<u8> {
    [x, y, width, height]
        .iter()
        .flat_map(|field| field.to_be_bytes())
        .chain(encoding.to_be_bytes())
        .collect()
}

/// Raw pixels of one colour, as our pixel format puts them on the wire (B, G, R, x).
fn raw(pixels: usize, [red, green, blue]: [u8; 3]) -> Vec<u8> {
    [blue, green, red, 0].repeat(pixels)
}

/// A scripted server: it writes `script` through a pipe of `chunk` bytes (1 makes every read
/// short), then closes unless `hold` (a server that stalls); what the client wrote comes back
/// from `written`.
struct Peer {
    client_reader: DuplexStream,
    client_writer: DuplexStream,
    written: tokio::task::JoinHandle<Vec<u8>>,
}

fn peer(script: Vec<u8>, chunk: usize, hold: bool) -> Peer {
    let (client_reader, mut server_writer) = tokio::io::duplex(chunk);
    let (client_writer, mut server_reader) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let _ = server_writer.write_all(&script).await;
        if hold {
            std::future::pending::<()>().await;
        }
    });
    let written = tokio::spawn(async move {
        let mut written = Vec::new();
        let _ = server_reader.read_to_end(&mut written).await;
        written
    });
    Peer {
        client_reader,
        client_writer,
        written,
    }
}

/// The session after its handshake with `peer`, and what the client wrote.
async fn open(
    peer: Peer,
) -> (
    Session<DuplexStream, DuplexStream>,
    tokio::task::JoinHandle<Vec<u8>>,
) {
    let session = Session::handshake(peer.client_reader, peer.client_writer, LIMITS)
        .await
        .unwrap();
    (session, peer.written)
}

/// A full update of a 4x2 screen: red, then a 2x1 green rectangle at 1,1, then a CopyRect of
/// the green pair to 0,0; then a DesktopSize to 2x2 and a blue full update.
fn scene() -> Vec<u8> {
    let mut script = greeting(4, 2);
    script.extend(update(3));
    script.extend(rect(0, 0, 4, 2, 0));
    script.extend(raw(8, [255, 0, 0]));
    script.extend(rect(1, 1, 2, 1, 0));
    script.extend(raw(2, [0, 255, 0]));
    script.extend(rect(0, 0, 2, 1, 1));
    script.extend([0, 1, 0, 1]);
    script.extend(update(1));
    script.extend(rect(0, 0, 2, 2, -223));
    script.extend(update(1));
    script.extend(rect(0, 0, 2, 2, 0));
    script.extend(raw(4, [0, 0, 255]));
    script
}

async fn play_scene(chunk: usize) {
    let (mut session, written) = open(peer(scene(), chunk, false)).await;
    assert_eq!(session.name(), "QEMU");
    assert_eq!(
        (session.screen().width(), session.screen().height()),
        (4, 2)
    );
    session.request_update(false).await.unwrap();
    assert_eq!(
        session.next_event().await.unwrap(),
        Event::Updated {
            rects: 3,
            resized: false
        }
    );
    let (r, g) = ([255, 0, 0], [0, 255, 0]);
    let expected: Vec<u8> = [g, g, r, r, r, g, g, r].concat();
    assert_eq!(session.screen().rgb(), expected);

    session.request_update(true).await.unwrap();
    assert_eq!(
        session.next_event().await.unwrap(),
        Event::Updated {
            rects: 0,
            resized: true
        }
    );
    assert!(session.pending(), "a DesktopSize answers no request");
    assert_eq!(session.screen().rgb(), [0; 12]);
    assert_eq!(
        session.next_event().await.unwrap(),
        Event::Updated {
            rects: 1,
            resized: false
        }
    );
    assert_eq!(session.screen().rgb(), [0, 0, 255].repeat(4));
    assert!(matches!(session.next_event().await, Err(RfbError::Closed)));
    drop(session);

    let written = written.await.unwrap();
    let mut expected = b"RFB 003.008\n\x01\x01".to_vec();
    expected.extend([
        0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
    ]);
    expected.extend([2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x21]);
    expected.extend([3, 0, 0, 0, 0, 0, 0, 4, 0, 2]);
    expected.extend([3, 1, 0, 0, 0, 0, 0, 4, 0, 2]);
    assert_eq!(written, expected);
}

#[tokio::test]
async fn a_scene_plays_whole() {
    play_scene(1 << 16).await;
}

#[tokio::test]
async fn a_scene_plays_through_one_byte_reads() {
    play_scene(1).await;
}

/// The error the session ends with after the greeting of a 4x2 screen and `then`, one full
/// update request sent.
async fn fault(then: Vec<u8>) -> RfbError {
    let mut script = greeting(4, 2);
    script.extend(then);
    let (mut session, _peer) = open(peer(script, 7, false)).await;
    session.request_update(false).await.unwrap();
    loop {
        if let Err(error) = session.next_event().await {
            return error;
        }
    }
}

#[tokio::test]
async fn a_rectangle_outside_the_screen_ends_the_session_before_its_pixels_are_read() {
    let mut then = update(1);
    then.extend(rect(3, 0, 2, 1, 0));
    let error = fault(then).await;
    assert!(
        matches!(
            error,
            RfbError::OutsideScreen {
                x: 3,
                width: 2,
                screen_width: 4,
                ..
            }
        ),
        "{error:?}"
    );
    let mut then = update(1);
    then.extend(rect(0, 0, 1, 1, 1));
    then.extend([0, 3, 0, 2]);
    assert!(matches!(
        fault(then).await,
        RfbError::OutsideScreen { x: 3, y: 2, .. }
    ));
}

#[tokio::test]
async fn a_resize_in_the_middle_of_an_update_draws_what_follows_on_the_new_screen() {
    // Red on the 4x2 screen, then a 2x2 screen, then green on its top row; then a rectangle of
    // the old size, now outside.
    let mut script = greeting(4, 2);
    script.extend(update(3));
    script.extend(rect(0, 0, 4, 2, 0));
    script.extend(raw(8, [255, 0, 0]));
    script.extend(rect(0, 0, 2, 2, -223));
    script.extend(rect(0, 0, 2, 1, 0));
    script.extend(raw(2, [0, 255, 0]));
    script.extend(update(1));
    script.extend(rect(2, 0, 2, 1, 0));
    let (mut session, _peer) = open(peer(script, 5, false)).await;
    session.request_update(false).await.unwrap();
    assert_eq!(
        session.next_event().await.unwrap(),
        Event::Updated {
            rects: 2,
            resized: true
        }
    );
    let screen = session.screen();
    assert_eq!((screen.width(), screen.height()), (2, 2));
    assert_eq!(
        screen.rgb(),
        [[0, 255, 0], [0, 255, 0], [0; 3], [0; 3]].concat()
    );
    session.request_update(true).await.unwrap();
    assert!(matches!(
        session.next_event().await,
        Err(RfbError::OutsideScreen {
            x: 2,
            screen_width: 2,
            ..
        })
    ));
}

#[tokio::test]
async fn a_huge_desktop_size_is_refused_before_it_is_allocated() {
    let mut then = update(1);
    then.extend(rect(0, 0, u16::MAX, u16::MAX, -223));
    assert_eq!(
        fault(then).await.to_string(),
        "the VNC screen is 65535x65535, more than 64 pixels"
    );
    let script = greeting(9, 9);
    let result = Session::handshake(&script[..], tokio::io::sink(), LIMITS).await;
    assert!(matches!(
        result,
        Err(RfbError::ScreenTooLarge {
            width: 9,
            height: 9,
            ..
        })
    ));
}

#[tokio::test]
async fn an_encoding_not_asked_for_ends_the_session() {
    let mut then = update(1);
    then.extend(rect(0, 0, 1, 1, 16));
    assert!(matches!(
        fault(then).await,
        RfbError::UnknownEncoding { encoding: 16 }
    ));
    assert!(matches!(
        fault(vec![9]).await,
        RfbError::UnknownMessage { kind: 9 }
    ));
}

#[tokio::test]
async fn a_server_closing_in_the_middle_of_an_update_is_closed() {
    let mut then = update(2);
    then.extend(rect(0, 0, 4, 2, 0));
    then.extend(raw(5, [1, 2, 3]));
    assert!(matches!(fault(then).await, RfbError::Closed));
}

#[tokio::test]
async fn pixels_nobody_asked_for_are_refused() {
    let mut then = update(1);
    then.extend(rect(0, 0, 1, 1, 0));
    then.extend(raw(1, [1, 2, 3]));
    then.extend(update(1));
    then.extend(rect(0, 0, 1, 1, 0));
    then.extend(raw(1, [1, 2, 3]));
    assert!(matches!(fault(then).await, RfbError::Unsolicited));
}

#[tokio::test]
async fn texts_are_skipped_within_their_bound() {
    let mut then = vec![2, 3, 0, 0, 0, 0, 0, 0, 3, b'a', b'b', b'c', 3, 0, 0, 0];
    then.extend((crate::MAX_CUT_TEXT_BYTES + 1).to_be_bytes());
    assert!(matches!(
        fault(then).await,
        RfbError::TextTooLong {
            bytes: 1_048_577,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_server_stalling_in_the_middle_of_a_message_is_stalled_not_a_hang() {
    let mut script = greeting(4, 2);
    script.extend(update(1));
    script.extend(rect(0, 0, 4, 2, 0));
    let (mut session, _peer) = open(peer(script, 64, true)).await;
    session.request_update(false).await.unwrap();
    assert!(matches!(
        session.next_event().await,
        Err(RfbError::Stalled { timeout }) if timeout == LIMITS.message_timeout
    ));
    assert!(matches!(
        session.next_event().await,
        Err(RfbError::Interrupted)
    ));
}

#[tokio::test]
async fn handshakes_that_are_not_ours_are_refused_with_their_reason() {
    let refuse = |script: Vec<u8>| async move {
        Session::handshake(&script[..], tokio::io::sink(), LIMITS)
            .await
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        refuse(b"RFB 003.003\n".to_vec()).await,
        "the VNC server speaks \"RFB 003.003\\n\", not RFB 003.008"
    );
    let mut script = b"RFB 003.008\n\x00\x00\x00\x00\x04busy".to_vec();
    assert_eq!(
        refuse(script.clone()).await,
        "the VNC server refused the connection: busy"
    );
    script = b"RFB 003.008\n\x01\x02".to_vec();
    assert_eq!(
        refuse(script).await,
        "the VNC server does not offer security type None (it offers [2])"
    );
    script = b"RFB 003.008\n\x01\x01\x00\x00\x00\x01\x00\x00\x00\x02no".to_vec();
    assert_eq!(
        refuse(script).await,
        "the VNC server refused security type None: no"
    );
    script = b"RFB 003.008\n\x01\x01\x00\x00\x00\x01\xff\xff\xff\xff".to_vec();
    assert_eq!(
        refuse(script).await,
        "the VNC server sent a text of 4294967295 bytes, more than 4096"
    );
}
