//! From a checked [`RedisTarget`] to connections: one Redis (plain or TLS),
//! a Cluster's client builder, or the current master as the Sentinels name
//! it, asked again for every new connection so that a failover is followed
//! by simply reconnecting.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, RedisError, TlsMode};

use crate::config::RedisTarget;
use crate::{PublishError, REDIS_TIMEOUT};

/// Makes connections to a [`RedisTarget`]. Cheap to clone.
#[derive(Clone)]
pub struct Connector {
    target: RedisTarget,
    /// The Sentinel client (it caches its connections to the Sentinels).
    sentinel: Option<Arc<tokio::sync::Mutex<SentinelClient>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("target", &self.target.describe())
            .finish()
    }
}

impl Connector {
    pub fn new(target: RedisTarget) -> Result<Self, PublishError> {
        let sentinel = match &target {
            RedisTarget::Sentinel(s) => {
                let mut builder = SentinelClientBuilder::new(
                    s.sentinels.clone(),
                    &s.master,
                    SentinelServerType::Master,
                )
                .map_err(PublishError::Url)?;
                if s.sentinel_tls {
                    builder = builder.set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if let Some(certs) = &s.tls {
                        builder = builder.set_client_to_sentinel_certificates(certs.clone());
                    }
                }
                if let Some(user) = &s.sentinel_auth.username {
                    builder = builder.set_client_to_sentinel_username(user);
                }
                if let Some(password) = &s.sentinel_auth.password {
                    builder = builder.set_client_to_sentinel_password(password);
                }
                if s.master_tls {
                    builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
                    if let Some(certs) = &s.tls {
                        builder = builder.set_client_to_redis_certificates(certs.clone());
                    }
                }
                if let Some(user) = &s.master_auth.username {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &s.master_auth.password {
                    builder = builder.set_client_to_redis_password(password);
                }
                let client = builder.build().map_err(PublishError::Url)?;
                Some(Arc::new(tokio::sync::Mutex::new(client)))
            }
            _ => None,
        };
        Ok(Self {
            target,
            sentinel,
            timeout: REDIS_TIMEOUT,
        })
    }

    /// The same connector with another time limit for connecting and for
    /// each command.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// A client for the one Redis, or for the master the Sentinels name now
    /// (checked to be a master). Not for a Cluster: see
    /// [`Connector::cluster_builder`].
    pub async fn client(&self) -> Result<redis::Client, PublishError> {
        let connect_error = |source| PublishError::Connect {
            addr: self.target.address(),
            source,
        };
        match (&self.target, &self.sentinel) {
            (RedisTarget::Single { client, .. }, _) => Ok(client.clone()),
            (RedisTarget::Sentinel(_), Some(sentinel)) => {
                let lookup = async { sentinel.lock().await.async_get_client().await };
                match tokio::time::timeout(self.timeout, lookup).await {
                    Ok(result) => result.map_err(connect_error),
                    Err(_) => Err(connect_error(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the Sentinels did not answer in time",
                    )))),
                }
            }
            _ => Err(PublishError::Url(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a Redis Cluster has no single client; use the cluster builder",
            )))),
        }
    }

    /// A multiplexed connection to the one Redis or the current master.
    pub async fn connect(&self) -> Result<MultiplexedConnection, PublishError> {
        let client = self.client().await?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|source| PublishError::Connect {
                addr: self.target.address(),
                source,
            })
    }

    /// A Cluster client builder with the seeds, TLS certificates and time
    /// limits of this target (`None` unless it is a Cluster).
    pub fn cluster_builder(&self) -> Option<ClusterClientBuilder> {
        let RedisTarget::Cluster { seeds, tls, .. } = &self.target else {
            return None;
        };
        let mut builder = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout);
        if let Some(certs) = tls {
            builder = builder.certs(certs.clone());
        }
        Some(builder)
    }
}
