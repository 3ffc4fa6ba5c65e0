//! One client connection, plain TCP or TLS (rustls), as the rest of the gateway sees it:
//! `Read + Write`, clonable (a response's `Sink` writes from the session's pump while the
//! connection's thread waits on the call), with the TCP socket underneath for timeouts,
//! peeking and shutdown.
//!
//! A TLS connection's state sits behind one lock shared by its clones. Reads and writes
//! never overlap in time on one connection (the thread reads a request only when no
//! response of it is being written), so a read holding the lock blocks no writer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::config::gateway::TlsFiles;
use crate::error::{Error, Result};

type Tls = Arc<Mutex<StreamOwned<ServerConnection, TcpStream>>>;

pub(crate) struct Conn {
    /// Shared by the clones: cloning costs no descriptor (`dup`) per response.
    tcp: Arc<TcpStream>,
    tls: Option<Tls>,
    /// The read timeout last set through this handle, so a read sets it only on a change.
    read_timeout: Option<Duration>,
}

impl Conn {
    pub fn plain(tcp: TcpStream) -> Conn {
        Conn { tcp: Arc::new(tcp), tls: None, read_timeout: None }
    }

    /// A TLS server connection over `tcp`; the handshake runs on the first read or write
    /// (under the connection's read timeout, so a client that stalls it is cut off).
    pub fn tls(tcp: TcpStream, config: &Arc<ServerConfig>) -> io::Result<Conn> {
        let server = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
        let raw = tcp.try_clone()?;
        let tls = Some(Arc::new(Mutex::new(StreamOwned::new(server, raw))));
        Ok(Conn { tcp: Arc::new(tcp), tls, read_timeout: None })
    }

    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(Conn { tcp: Arc::clone(&self.tcp), tls: self.tls.clone(), read_timeout: None })
    }

    /// The TCP socket (timeouts, `peek`, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        // Only whole milliseconds matter to a read deadline; a change below that is noise.
        let same = match (self.read_timeout, t) {
            (Some(a), Some(b)) => a.as_millis() == b.as_millis(),
            _ => false,
        };
        if !same {
            self.tcp.set_read_timeout(t)?;
            self.read_timeout = t;
        }
        Ok(())
    }

    /// Closes both directions (after a TLS `close_notify`, when it can be sent at once).
    pub fn shutdown(&self) {
        if let Some(tls) = &self.tls
            && let Some(mut s) = tls.try_lock()
        {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    /// Stops writing (the peer sees the end of the response) but keeps reading.
    pub fn shutdown_write(&self) {
        if let Some(tls) = &self.tls {
            let mut s = tls.lock();
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp.shutdown(Shutdown::Write);
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&*self.tcp).read(buf),
            Some(t) => t.lock().read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&*self.tcp).write(buf),
            Some(t) => t.lock().write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &self.tls {
            None => (&*self.tcp).write_all(buf),
            // One lock for the whole buffer and its flush: no other writer slips in.
            Some(t) => {
                let mut s = t.lock();
                s.write_all(buf)?;
                s.flush()
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.tls {
            None => (&*self.tcp).flush(),
            Some(t) => t.lock().flush(),
        }
    }
}

/// The server side of TLS from a certificate chain and a private key, both PEM files.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Config(format!("gateway.tls.{what}: cannot read {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| bad("cert", &files.cert, &e))?;
    if certs.is_empty() {
        return Err(bad("cert", &files.cert, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad("key", &files.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Config(format!("gateway.tls: the certificate and key do not make a server: {e}")))?;
    Ok(Arc::new(config))
}
