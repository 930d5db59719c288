//! One container's server: a UDP loop and a TCP loop on its listeners, until dropped.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::answer::{decide, server_failure, Reply};
use super::{forward, Config, Listeners, MAX_FORWARDS};

/// A TCP client that sends nothing for this long is hung up on.
const TCP_IDLE: Duration = Duration::from_secs(10);

struct Context {
    config: Config,
    netns: Arc<OwnedFd>,
    /// Forwards and TCP connections in flight.
    slots: Arc<Semaphore>,
}

impl Context {
    /// The reply to `query`, forwarding it if it is not a container's name.
    async fn reply(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        match decide(query, &self.config.container, &*self.config.names) {
            Reply::Answer(bytes) => Some(bytes),
            Reply::Drop => None,
            Reply::Forward => self.forward(query, tcp).await,
        }
    }

    /// The upstream servers' answer to `query`, or SERVFAIL.
    async fn forward(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let upstreams = &self.config.upstreams;
        let answer = match tcp {
            false => forward::udp(&self.netns, upstreams, query).await,
            true => forward::tcp(&self.netns, upstreams, query).await,
        };
        answer.or_else(|| server_failure(query))
    }
}

/// The tasks serving one container; dropping it stops them and closes the sockets.
pub struct Endpoint {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Endpoint {
    pub fn start(listeners: Listeners, config: Config) -> io::Result<Endpoint> {
        listeners.udp.set_nonblocking(true)?;
        listeners.tcp.set_nonblocking(true)?;
        let udp = Arc::new(UdpSocket::from_std(listeners.udp)?);
        let tcp = TcpListener::from_std(listeners.tcp)?;
        let cx = Arc::new(Context {
            config,
            netns: listeners.netns,
            slots: Arc::new(Semaphore::new(MAX_FORWARDS)),
        });
        let tasks = vec![
            tokio::spawn(serve_udp(udp, cx.clone())),
            tokio::spawn(serve_tcp(tcp, cx)),
        ];
        Ok(Endpoint { tasks })
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, cx: Arc<Context>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("dns: {e}");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        match decide(&query, &cx.config.container, &*cx.config.names) {
            Reply::Answer(bytes) => send(&socket, &bytes, peer).await,
            Reply::Drop => {}
            Reply::Forward => {
                // Over the limit the query is dropped; the client asks again.
                let Ok(slot) = cx.slots.clone().try_acquire_owned() else {
                    continue;
                };
                let (socket, cx) = (socket.clone(), cx.clone());
                tokio::spawn(async move {
                    if let Some(bytes) = cx.forward(&query, false).await {
                        send(&socket, &bytes, peer).await;
                    }
                    drop(slot);
                });
            }
        }
    }
}

async fn send(socket: &UdpSocket, bytes: &[u8], peer: SocketAddr) {
    if let Err(e) = socket.send_to(bytes, peer).await {
        tracing::debug!("dns: {e}");
    }
}

async fn serve_tcp(listener: TcpListener, cx: Arc<Context>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(slot) = cx.slots.clone().try_acquire_owned() else {
            continue;
        };
        let cx = cx.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, &cx).await;
            drop(slot);
        });
    }
}

/// Length-prefixed queries on one connection, each answered before the next is read.
async fn serve_connection(mut stream: TcpStream, cx: &Context) -> io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(len) => len?,
            Err(_) => return Ok(()),
        };
        let mut query = vec![0u8; len as usize];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(io::Error::other)??;
        let Some(reply) = cx.reply(&query, true).await else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).map_err(io::Error::other)?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};

    use super::super::{Names, Server};
    use super::*;

    struct One;

    impl Names for One {
        fn addresses(&self, _: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
            (name == "web").then(|| vec![Ipv4Addr::new(10, 9, 0, 2)])
        }
        fn name_of(&self, _: &str, _: Ipv4Addr) -> Option<String> {
            None
        }
    }

    fn query(name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// Listeners on loopback in this namespace, the way `Listeners::open` makes them in a
    /// container's.
    fn listeners() -> (Listeners, SocketAddr, SocketAddr) {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (u, t) = (udp.local_addr().unwrap(), tcp.local_addr().unwrap());
        let netns: OwnedFd = std::fs::File::open("/proc/self/ns/net").unwrap().into();
        let l = Listeners {
            udp,
            tcp,
            netns: Arc::new(netns),
        };
        (l, u, t)
    }

    #[tokio::test]
    async fn names_are_answered_others_forwarded_and_stop_closes_the_server() {
        // An upstream that answers every query with REFUSED, to tell a forward apart.
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
                let q = Message::from_vec(&buf[..n]).unwrap();
                let mut r =
                    Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::Refused);
                r.add_queries(q.queries);
                let _ = upstream.send_to(&r.to_vec().unwrap(), peer).await;
            }
        });
        let server = Server::default();
        let (l, udp_addr, tcp_addr) = listeners();
        let config = Config {
            container: "me".into(),
            names: Arc::new(One),
            upstreams: vec![up_addr],
        };
        server.serve(l, config).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = |q: Vec<u8>| {
            let client = &client;
            async move {
                client.send_to(&q, udp_addr).await.unwrap();
                let mut buf = vec![0u8; 512];
                let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                Message::from_vec(&buf[..n]).unwrap()
            }
        };
        let m = ask(query("web.")).await;
        assert_eq!(m.answers.len(), 1);
        let m = ask(query("example.org.")).await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "forwarded");

        // TCP: the same answer, length-prefixed.
        let mut tcp = TcpStream::connect(tcp_addr).await.unwrap();
        let q = query("web.");
        let mut out = (q.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&q);
        tcp.write_all(&out).await.unwrap();
        let len = tcp.read_u16().await.unwrap();
        let mut body = vec![0u8; len as usize];
        tcp.read_exact(&mut body).await.unwrap();
        assert_eq!(Message::from_vec(&body).unwrap().answers.len(), 1);

        assert!(server.serves("me"));
        server.stop("me");
        assert!(!server.serves("me"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(tcp_addr).await.is_err(),
            "the listener is closed when the server stops"
        );
    }

    #[tokio::test]
    async fn without_an_answer_from_upstream_the_client_gets_servfail() {
        let server = Server::default();
        let (l, udp_addr, _) = listeners();
        let config = Config {
            container: "me".into(),
            names: Arc::new(One),
            upstreams: Vec::new(),
        };
        server.serve(l, config).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(&query("example.org."), udp_addr)
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = client.recv(&mut buf).await.unwrap();
        let m = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }
}
