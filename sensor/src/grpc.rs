//! The gRPC service `sensor.v1.Sensor` (tonic), on a root-only unix socket and optionally
//! on TCP, with server reflection so generic clients (grpcurl, grpcio) can discover it.

use std::{
    collections::HashSet,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, atomic::Ordering},
};

use anyhow::{Context, Result};
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{
    Request, Response, Status,
    transport::{Server, ServerTlsConfig, server::TcpIncoming},
};

use crate::{
    health::HealthSource,
    proto::{self, sensor_server::SensorServer},
    publish::Feed,
};

pub struct SensorService {
    pub feed: Feed,
    pub health: Arc<HealthSource>,
    pub detections: crate::detect::DetectionStore,
    pub av: Arc<crate::antimalware::Antimalware>,
    /// Ends open streams when the daemon stops, so shutdown does not wait on clients.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Which events a subscriber asked for.
struct Filter {
    kinds: HashSet<String>,
    pids: HashSet<u32>,
    descendants: bool,
}

impl Filter {
    fn from_request(r: &proto::StreamEventsRequest) -> Result<Self, Status> {
        for k in &r.kinds {
            if k != "stream_gap"
                && k != "detection"
                && sensor_common::EventKind::from_name(k).is_none()
            {
                return Err(Status::invalid_argument(format!(
                    "unknown event kind {k:?}"
                )));
            }
        }
        Ok(Self {
            kinds: r.kinds.iter().cloned().collect(),
            pids: r.pids.iter().copied().collect(),
            descendants: r.include_descendants,
        })
    }

    fn matches(&self, e: &proto::Event) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&e.kind) {
            return false;
        }
        if self.pids.is_empty() {
            return true;
        }
        let Some(p) = &e.process else { return false };
        self.pids.contains(&p.pid)
            || (self.descendants
                && (self.pids.contains(&p.ppid)
                    || p.ancestors.iter().any(|a| self.pids.contains(&a.pid))))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;
type ScanStream = Pin<Box<dyn Stream<Item = Result<proto::ScanProgress, Status>> + Send>>;

/// Runs blocking daemon work (disk, scans) off the async threads; errors become
/// FAILED_PRECONDITION with the whole context chain, which the CLI prints as is.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<Response<T>, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(Response::new(v)),
        Ok(Err(e)) => Err(Status::failed_precondition(format!("{e:#}"))),
        Err(e) => Err(Status::internal(e.to_string())),
    }
}

#[tonic::async_trait]
impl proto::sensor_server::Sensor for SensorService {
    type StreamEventsStream = EventStream;
    type StartScanStream = ScanStream;

    async fn update_definitions(
        &self,
        request: Request<proto::UpdateDefinitionsRequest>,
    ) -> Result<Response<proto::DefinitionsInfo>, Status> {
        let from = PathBuf::from(request.into_inner().from_dir);
        let av = self.av.clone();
        blocking(move || av.update_definitions(&from)).await
    }

    async fn list_threats(
        &self,
        _: Request<proto::ListThreatsRequest>,
    ) -> Result<Response<proto::ListThreatsResponse>, Status> {
        Ok(Response::new(proto::ListThreatsResponse {
            threats: self.av.handler.log.list(),
        }))
    }

    async fn list_quarantine(
        &self,
        _: Request<proto::ListQuarantineRequest>,
    ) -> Result<Response<proto::ListQuarantineResponse>, Status> {
        let av = self.av.clone();
        blocking(move || {
            Ok(proto::ListQuarantineResponse {
                entries: av.handler.quarantine.list(),
            })
        })
        .await
    }

    async fn restore_quarantine(
        &self,
        request: Request<proto::RestoreQuarantineRequest>,
    ) -> Result<Response<proto::RestoreQuarantineResponse>, Status> {
        let r = request.into_inner();
        let av = self.av.clone();
        blocking(move || {
            let dest = (!r.path.is_empty()).then(|| PathBuf::from(&r.path));
            let path = av
                .handler
                .quarantine
                .restore(&r.id, dest.as_deref(), r.overwrite)?;
            Ok(proto::RestoreQuarantineResponse {
                path: path.to_string_lossy().into_owned(),
            })
        })
        .await
    }

    async fn remove_quarantine(
        &self,
        request: Request<proto::RemoveQuarantineRequest>,
    ) -> Result<Response<proto::RemoveQuarantineResponse>, Status> {
        let id = request.into_inner().id;
        let av = self.av.clone();
        blocking(move || {
            av.handler.quarantine.remove(&id)?;
            Ok(proto::RemoveQuarantineResponse {})
        })
        .await
    }

    async fn list_exclusions(
        &self,
        _: Request<proto::ListExclusionsRequest>,
    ) -> Result<Response<proto::Exclusions>, Status> {
        Ok(Response::new((*self.av.handler.exclusions.get()).clone()))
    }

    async fn change_exclusion(
        &self,
        request: Request<proto::ChangeExclusionRequest>,
    ) -> Result<Response<proto::Exclusions>, Status> {
        let r = request.into_inner();
        let av = self.av.clone();
        blocking(move || av.handler.exclusions.change(&r.kind, &r.value, r.remove)).await
    }

    async fn start_scan(
        &self,
        request: Request<proto::StartScanRequest>,
    ) -> Result<Response<ScanStream>, Status> {
        let req = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let av = self.av.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut ready = Some(ready_tx);
            let r = av.scan(&req, |p| {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
                // A client that went away does not stop the scan; cancel does.
                let _ = tx.blocking_send(Ok(p));
            });
            if let (Err(e), Some(r)) = (r, ready.take()) {
                let _ = r.send(Err(e));
            }
        });
        match ready_rx.await {
            Ok(Ok(())) => Ok(Response::new(Box::pin(ReceiverStream::new(rx)))),
            Ok(Err(e)) => Err(Status::failed_precondition(format!("{e:#}"))),
            Err(_) => Err(Status::internal("scan ended without reporting")),
        }
    }

    async fn cancel_scan(
        &self,
        _: Request<proto::CancelScanRequest>,
    ) -> Result<Response<proto::CancelScanResponse>, Status> {
        Ok(Response::new(proto::CancelScanResponse {
            cancelled: self.av.cancel_scan(),
        }))
    }

    async fn stream_events(
        &self,
        request: Request<proto::StreamEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let req = request.into_inner();
        let filter = Filter::from_request(&req)?;
        // Subscribe before reading the backlog so nothing falls between the two.
        let mut live = self.feed.live.subscribe();
        let backlog: Vec<Arc<proto::Event>> = {
            let recent = self.feed.recent.lock().unwrap();
            let mut v: Vec<_> = recent
                .iter()
                .rev()
                .filter(|e| filter.matches(e))
                .take(req.backlog as usize)
                .cloned()
                .collect();
            v.reverse();
            v
        };
        let stats = self.health.stats.clone();
        let (tx, rx) = mpsc::channel(1024);
        stats.subscribers.fetch_add(1, Ordering::Relaxed);
        let snapshot_only = req.snapshot_only;
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last_seq = 0;
            for e in backlog {
                last_seq = e.seq;
                if tx.send(Ok((*e).clone())).await.is_err() {
                    break;
                }
            }
            while !snapshot_only && !shutdown_seen(&shutdown) {
                let next = tokio::select! {
                    r = live.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => break,
                };
                match next {
                    Ok(e) => {
                        if e.seq <= last_seq || !filter.matches(&e) {
                            continue;
                        }
                        if tx.send(Ok((*e).clone())).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        stats.stream_dropped.fetch_add(n, Ordering::Relaxed);
                        let gap = proto::Event {
                            kind: "stream_gap".into(),
                            gap: Some(proto::StreamGap { missed: n }),
                            ..Default::default()
                        };
                        if tx.send(Ok(gap)).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Closed) => break,
                }
            }
            stats.subscribers.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_detections(
        &self,
        request: Request<proto::ListDetectionsRequest>,
    ) -> Result<Response<proto::ListDetectionsResponse>, Status> {
        let since = request.into_inner().since;
        Ok(Response::new(proto::ListDetectionsResponse {
            detections: self.detections.since(since),
        }))
    }

    async fn get_health(
        &self,
        _: Request<proto::GetHealthRequest>,
    ) -> Result<Response<proto::Health>, Status> {
        let mut h = self.health.snapshot();
        h.real_time_protection = Some(self.av.rtp_health());
        h.definitions = Some(self.av.definitions());
        Ok(Response::new(h))
    }
}

fn shutdown_seen(rx: &tokio::sync::watch::Receiver<bool>) -> bool {
    *rx.borrow()
}

pub async fn serve(
    service: SensorService,
    unix: tokio::net::UnixListener,
    socket_path: PathBuf,
    tcp: Option<(TcpIncoming, ServerTlsConfig)>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let service = SensorServer::new(service);
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let uds = Server::builder()
        .add_service(service.clone())
        .add_service(reflection.clone())
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(unix),
            wait(shutdown.clone()),
        );
    let result = match tcp {
        Some((incoming, tls)) => {
            let tcp = Server::builder()
                .tls_config(tls)
                .context("TLS set-up of the TCP listener")?
                .add_service(service)
                .add_service(reflection)
                .serve_with_incoming_shutdown(incoming, wait(shutdown));
            tokio::try_join!(uds, tcp).map(|_| ())
        }
        None => uds.await,
    };
    let _ = std::fs::remove_file(&socket_path);
    result.context("gRPC server")
}
