//! TLS of the control channel (rustls, through tonic): the coordinator presents a certificate
//! and may require one of every worker; a worker checks the coordinator's against a CA it is
//! given and may present one of its own.

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The coordinator's side, PEM text as read from the files.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Its certificate chain (`--tls-cert`).
    pub cert: Vec<u8>,
    /// Its private key (`--tls-key`).
    pub key: Vec<u8>,
    /// When set (`--tls-ca`), workers must present a certificate this CA signed.
    pub client_ca: Option<Vec<u8>>,
}

/// A worker's side, PEM text as read from the files.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The CA that signed the coordinator's certificate (`--tls-ca`).
    pub ca: Vec<u8>,
    /// The name the coordinator's certificate must carry; by default the host of
    /// `--coordinator`.
    pub domain: Option<String>,
    /// The worker's own certificate and key (`--tls-cert`, `--tls-key`), for a coordinator that
    /// requires one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ServerTls {
    /// The tonic configuration.
    pub fn config(&self) -> ServerTlsConfig {
        let mut c = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            c = c.client_ca_root(Certificate::from_pem(ca));
        }
        c
    }
}

impl ClientTls {
    /// The tonic configuration for a coordinator reached as `host`.
    pub fn config(&self, host: &str) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .domain_name(self.domain.clone().unwrap_or_else(|| host.to_string()));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}
