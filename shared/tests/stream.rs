//! The streaming primitive against a real nats-server: order and size, credit, early answers,
//! cancellation and dead peers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use wharf_bus::service::{self, Reply};
use wharf_bus::stream::{Receiver, Sender, CHUNK_SIZE, IDLE_TIMEOUT, WINDOW};
use wharf_bus::testkit::NatsServer;
use wharf_bus::ErrorKind;

const GROUP: &str = "wharf.v1.streamtest";

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// A service whose `download` sends `n` bytes and whose `upload` answers with the byte count,
/// or (for `early`) answers after the first chunk.
async fn test_service(nats: &NatsServer) -> service::Running {
    let client = nats.client().await;
    let mut running = service::start(&client, "wharf-streamtest", "stream tests", GROUP)
        .await
        .unwrap();
    let c = client.clone();
    running
        .serve(GROUP, "download", move |req| {
            let c = c.clone();
            async move {
                let n: usize = wharf_bus::rpc::decode(&req.message.payload)?;
                let mut tx = Sender::accept(&c, &req, Bytes::new()).await?;
                tx.send(Bytes::from(pattern(n))).await?;
                tx.finish().await?;
                Ok(Reply::Streamed)
            }
        })
        .await
        .unwrap();
    let c = client.clone();
    running
        .serve(GROUP, "upload", move |req| {
            let c = c.clone();
            async move {
                let early: bool = wharf_bus::rpc::decode(&req.message.payload)?;
                let mut rx = Receiver::accept(&c, &req, Bytes::new()).await?;
                let mut total = 0usize;
                while let Some(chunk) = rx.next().await {
                    total += chunk?.len();
                    if early {
                        break;
                    }
                }
                rx.respond(wharf_bus::rpc::encode(&total)).await?;
                Ok(Reply::Streamed)
            }
        })
        .await
        .unwrap();
    // The endpoints are subscriptions of this connection: make sure the server has them before
    // another connection sends requests.
    client.flush().await.unwrap();
    running
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_megabyte_download_arrives_whole_and_in_order() {
    let nats = NatsServer::start();
    let _svc = test_service(&nats).await;
    let client = nats.client().await;
    let n = 20 * CHUNK_SIZE + 12345;
    let (mut rx, _) = Receiver::open_json(&client, &format!("{GROUP}.download"), &n)
        .await
        .unwrap();
    assert_eq!(rx.collect().await.unwrap(), pattern(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_ends_with_the_services_answer() {
    let nats = NatsServer::start();
    let _svc = test_service(&nats).await;
    let client = nats.client().await;
    let (mut tx, _) = Sender::open(
        &client,
        &format!("{GROUP}.upload"),
        wharf_bus::rpc::encode(&false).unwrap(),
    )
    .await
    .unwrap();
    for _ in 0..10 {
        tx.send(Bytes::from(vec![1u8; 300_000])).await.unwrap();
    }
    assert_eq!(tx.finish_json::<usize>().await.unwrap(), 3_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_comes_before_the_end_is_kept_for_finish() {
    let nats = NatsServer::start();
    let _svc = test_service(&nats).await;
    let client = nats.client().await;
    let (mut tx, _) = Sender::open(
        &client,
        &format!("{GROUP}.upload"),
        wharf_bus::rpc::encode(&true).unwrap(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    // Far more than one window: the sender must notice the answer instead of waiting for credit.
    for _ in 0..(4 * WINDOW) {
        tx.send(Bytes::from(vec![0u8; CHUNK_SIZE])).await.unwrap();
    }
    assert_eq!(tx.finish_json::<usize>().await.unwrap(), CHUNK_SIZE);
    assert!(
        started.elapsed() < IDLE_TIMEOUT,
        "no idle wait: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_cancels_the_writer() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let mut running = service::start(&client, "wharf-streamtest", "stream tests", GROUP)
        .await
        .unwrap();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(1);
    let c = client.clone();
    running
        .serve(GROUP, "endless", move |req| {
            let (c, done_tx) = (c.clone(), done_tx.clone());
            async move {
                let mut tx = Sender::accept(&c, &req, Bytes::new()).await?;
                let err = loop {
                    if let Err(e) = tx.send(Bytes::from(vec![0u8; 1024])).await {
                        break e;
                    }
                };
                done_tx.send(err).await.unwrap();
                Ok(Reply::Streamed)
            }
        })
        .await
        .unwrap();
    let (mut rx, _) = Receiver::open(&client, &format!("{GROUP}.endless"), Bytes::new())
        .await
        .unwrap();
    rx.next().await.unwrap().unwrap();
    drop(rx);
    let err = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
        .await
        .expect("the writer stops")
        .unwrap();
    assert_eq!(err.kind, ErrorKind::Cancelled, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_writer_is_noticed_within_the_idle_timeout() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let mut requests = client.subscribe(format!("{GROUP}.silent")).await.unwrap();
    let c = client.clone();
    tokio::spawn(async move {
        // Accepts, then never sends anything (no frames, no heartbeats): a crashed service.
        let req = requests.next().await.unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert(wharf_bus::stream::HDR_PEER, c.new_inbox().as_str());
        c.publish_with_headers(req.reply.unwrap(), h, Bytes::new())
            .await
            .unwrap();
    });
    let (mut rx, _) = Receiver::open(&client, &format!("{GROUP}.silent"), Bytes::new())
        .await
        .unwrap();
    let started = Instant::now();
    let err = rx.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(
        started.elapsed() < IDLE_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A frame a hostile peer sends: its `Wharf-Frame` (none: no header), more headers, payload.
type RawFrame = (Option<&'static str>, Vec<(&'static str, String)>, Bytes);

/// A hostile peer: answers the first request on `endpoint` by hand (its own inbox in the
/// accept reply), then sends the frames `frames` gives to the requester's inbox, and hands
/// back what it hears on its inbox afterwards.
async fn hostile_peer(
    client: &async_nats::Client,
    endpoint: &str,
    frames: Vec<RawFrame>,
) -> tokio::sync::mpsc::Receiver<async_nats::Message> {
    let mut requests = client.subscribe(endpoint.to_string()).await.unwrap();
    client.flush().await.unwrap();
    let c = client.clone();
    let (heard_tx, heard_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let req = requests.next().await.unwrap();
        let peer = req
            .headers
            .as_ref()
            .and_then(|h| h.get(wharf_bus::stream::HDR_PEER))
            .unwrap()
            .to_string();
        let inbox = c.new_inbox();
        let mut heard = c.subscribe(inbox.clone()).await.unwrap();
        let mut h = async_nats::HeaderMap::new();
        h.insert(wharf_bus::stream::HDR_PEER, inbox.as_str());
        c.publish_with_headers(req.reply.unwrap(), h, Bytes::new())
            .await
            .unwrap();
        for (frame, extra, payload) in frames {
            let mut h = async_nats::HeaderMap::new();
            if let Some(frame) = frame {
                h.insert(wharf_bus::stream::HDR_FRAME, frame);
            }
            for (k, v) in extra {
                h.insert(k, v.as_str());
            }
            c.publish_with_headers(peer.clone(), h, payload)
                .await
                .unwrap();
        }
        c.flush().await.unwrap();
        while let Some(msg) = heard.next().await {
            if heard_tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    heard_rx
}

/// The first frame other than a heartbeat or credit the hostile peer hears, as
/// (frame, payload).
async fn told(heard: &mut tokio::sync::mpsc::Receiver<async_nats::Message>) -> (String, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), heard.recv())
            .await
            .expect("the peer is told")
            .unwrap();
        let frame = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(wharf_bus::stream::HDR_FRAME))
            .map(|v| v.to_string())
            .unwrap_or_default();
        if frame != "hb" && frame != "credit" {
            return (frame, String::from_utf8_lossy(&msg.payload).to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_granting_credit_that_would_overflow_ends_the_upload() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let endpoint = format!("{GROUP}.greedy");
    let max = u64::MAX.to_string();
    let mut heard = hostile_peer(
        &client,
        &endpoint,
        vec![
            (Some("credit"), vec![], Bytes::from(max.clone())),
            (Some("credit"), vec![], Bytes::from(max)),
        ],
    )
    .await;
    let (mut tx, _) = Sender::open(&client, &endpoint, Bytes::new())
        .await
        .unwrap();
    let err = tx.send(Bytes::from(vec![0u8; 10])).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err:?}");
    assert!(err.message.contains("stream protocol error"), "{err:?}");
    let (frame, payload) = told(&mut heard).await;
    assert_eq!(frame, "error", "{payload}");
    assert!(payload.contains("window"), "{payload}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_credit_frame_ends_the_upload() {
    for bad in ["lots", "-1", "", "99999999999999999999999"] {
        let nats = NatsServer::start();
        let client = nats.client().await;
        let endpoint = format!("{GROUP}.bad-credit");
        let mut heard = hostile_peer(
            &client,
            &endpoint,
            vec![(Some("credit"), vec![], Bytes::from(bad))],
        )
        .await;
        let (mut tx, _) = Sender::open(&client, &endpoint, Bytes::new())
            .await
            .unwrap();
        let err = tx.send(Bytes::from(vec![0u8; 10])).await.unwrap_err();
        assert!(err.message.contains("malformed credit"), "{bad:?}: {err:?}");
        assert_eq!(told(&mut heard).await.0, "error", "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_ignoring_its_credit_ends_the_download() {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let endpoint = format!("{GROUP}.flood");
    // Far more frames than the window, without waiting for any credit.
    let frames = (0..4 * WINDOW)
        .map(|seq| {
            (
                Some("data"),
                vec![(wharf_bus::stream::HDR_SEQ, seq.to_string())],
                Bytes::from_static(b"x"),
            )
        })
        .collect();
    let mut heard = hostile_peer(&client, &endpoint, frames).await;
    let (mut rx, _) = Receiver::open(&client, &endpoint, Bytes::new())
        .await
        .unwrap();
    // Let the flood arrive before reading.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = 0;
    let err = loop {
        match rx.next().await {
            Some(Ok(_)) => got += 1,
            Some(Err(e)) => break e,
            None => panic!("the flood was taken whole"),
        }
    };
    assert!(got < 4 * WINDOW, "{got}");
    assert!(err.message.contains("more data frames than"), "{err:?}");
    let (frame, payload) = told(&mut heard).await;
    assert_eq!(frame, "cancel", "{payload}");
    assert!(rx.next().await.is_none(), "the stream is over");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_end_the_download() {
    let cases: Vec<(&str, Vec<RawFrame>)> = vec![
        (
            "no frame header",
            vec![(None, vec![], Bytes::from_static(b"?"))],
        ),
        (
            "unknown frame",
            vec![(Some("bogus"), vec![], Bytes::from_static(b"?"))],
        ),
        (
            "credit to the receiver",
            vec![(Some("credit"), vec![], Bytes::from_static(b"16"))],
        ),
        (
            "a sequence number that does not parse",
            vec![(
                Some("data"),
                vec![(wharf_bus::stream::HDR_SEQ, "+0".to_string())],
                Bytes::from_static(b"x"),
            )],
        ),
        (
            "a sequence number beyond u64",
            vec![(
                Some("data"),
                vec![(
                    wharf_bus::stream::HDR_SEQ,
                    "99999999999999999999999".to_string(),
                )],
                Bytes::from_static(b"x"),
            )],
        ),
    ];
    for (what, frames) in cases {
        let nats = NatsServer::start();
        let client = nats.client().await;
        let endpoint = format!("{GROUP}.malformed");
        let mut heard = hostile_peer(&client, &endpoint, frames).await;
        let (mut rx, _) = Receiver::open(&client, &endpoint, Bytes::new())
            .await
            .unwrap();
        let err = tokio::time::timeout(Duration::from_secs(5), rx.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no error in time"))
            .expect("an error, not the end")
            .unwrap_err();
        assert!(
            err.message.contains("protocol error") || err.message.contains("lost frames"),
            "{what}: {err:?}"
        );
        assert_eq!(told(&mut heard).await.0, "cancel", "{what}");
    }
}
