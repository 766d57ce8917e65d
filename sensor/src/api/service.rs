//! The gRPC service `sensor.v1.Sensor` (tonic), on a root-only unix socket and optionally
//! on TCP, with server reflection so generic clients (grpcurl, grpcio) can discover it.

use std::{path::PathBuf, pin::Pin, sync::Arc};

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{
    Request, Response, Status,
    transport::{Server, ServerTlsConfig, server::TcpIncoming},
};

use super::{
    errors::{MAX_STATUS_CHARS, bounded, status},
    health::HealthSource,
};
use crate::{
    antimalware::Antimalware,
    detect::{DetectionStore, sigma::SigmaSource},
    pipeline::{
        publish::Feed,
        stream::{Filter, Subscription, UnknownKind},
    },
    proto::{self, sensor_server::SensorServer},
};

pub struct SensorService {
    pub feed: Feed,
    pub health: Arc<HealthSource>,
    pub detections: DetectionStore,
    pub rules: Arc<SigmaSource>,
    pub av: Arc<Antimalware>,
    /// Ends open streams when the daemon stops, so shutdown does not wait on clients.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::Event, Status>> + Send>>;
type ScanStream = Pin<Box<dyn Stream<Item = Result<proto::ScanProgress, Status>> + Send>>;

/// Runs blocking daemon work (disk, scans) off the async threads; errors go out with the
/// status their kind calls for (see [`status`]).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<Response<T>, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(Response::new(v)),
        Ok(Err(e)) => Err(status(&e)),
        Err(_) => Err(Status::internal(
            "the daemon failed while handling this request",
        )),
    }
}

/// At most this many items in one page of a list.
const MAX_PAGE_ITEMS: usize = 1000;
/// About the most bytes in one page: far below the 4 MiB gRPC message limit, whatever the
/// size of one item (each is far below this).
const MAX_PAGE_BYTES: usize = 1 << 20;

/// The page of `items` that starts at `offset`: at most `page_size` items (0: the
/// daemon's choice, [`MAX_PAGE_ITEMS`] at most) and about [`MAX_PAGE_BYTES`], never empty
/// while items are left. Also the offset of the next page, if any.
fn page<T: prost::Message + Clone>(
    items: &[T],
    offset: usize,
    page_size: u32,
) -> (Vec<T>, Option<usize>) {
    let most = match page_size as usize {
        0 => MAX_PAGE_ITEMS,
        n => n.min(MAX_PAGE_ITEMS),
    };
    let rest = items.get(offset..).unwrap_or_default();
    let mut bytes = 0;
    let taken = rest
        .iter()
        .take(most)
        .take_while(|item| {
            bytes += item.encoded_len();
            bytes <= MAX_PAGE_BYTES
        })
        .count()
        .max(rest.len().min(1));
    let next = (taken < rest.len()).then_some(offset + taken);
    (rest[..taken].to_vec(), next)
}

/// The offset a page token of ours stands for (the empty token: the start).
fn page_offset(token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse()
        .map_err(|_| Status::invalid_argument("page_token is not one this daemon gave"))
}

fn next_token(next: Option<impl ToString>) -> String {
    next.map(|n| n.to_string()).unwrap_or_default()
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
        request: Request<proto::ListThreatsRequest>,
    ) -> Result<Response<proto::ListThreatsResponse>, Status> {
        let r = request.into_inner();
        let offset = page_offset(&r.page_token)?;
        let (threats, next) = page(&self.av.handler.log.list(), offset, r.page_size);
        Ok(Response::new(proto::ListThreatsResponse {
            threats,
            next_page_token: next_token(next),
        }))
    }

    async fn list_quarantine(
        &self,
        request: Request<proto::ListQuarantineRequest>,
    ) -> Result<Response<proto::ListQuarantineResponse>, Status> {
        let r = request.into_inner();
        let offset = page_offset(&r.page_token)?;
        let av = self.av.clone();
        blocking(move || {
            let (entries, next) = page(&av.handler.quarantine.list(), offset, r.page_size);
            Ok(proto::ListQuarantineResponse {
                entries,
                next_page_token: next_token(next),
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
            Ok(Err(e)) => Err(status(&e)),
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
        let filter = Filter::new(&req.kinds, &req.pids, req.include_descendants).map_err(
            |UnknownKind(k)| {
                Status::invalid_argument(format!("unknown event kind {:?}", bounded(&k, 64)))
            },
        )?;
        let sub = Subscription {
            filter,
            backlog: req.backlog as usize,
            snapshot_only: req.snapshot_only,
        };
        let events = self
            .feed
            .subscribe(sub, self.health.stats.clone(), self.shutdown.clone());
        Ok(Response::new(Box::pin(ReceiverStream::new(events).map(Ok))))
    }

    async fn list_detections(
        &self,
        request: Request<proto::ListDetectionsRequest>,
    ) -> Result<Response<proto::ListDetectionsResponse>, Status> {
        let r = request.into_inner();
        // The token is the sequence number of the last detection sent: a page stays right
        // while new detections arrive and old ones leave the store.
        let since = r.since.max(page_offset(&r.page_token)? as u64);
        let (detections, more) = page(&self.detections.since(since), 0, r.page_size);
        let next = more.and_then(|_| detections.last()).map(|d| d.seq);
        Ok(Response::new(proto::ListDetectionsResponse {
            detections,
            next_page_token: next_token(next),
        }))
    }

    async fn update_rules(
        &self,
        request: Request<proto::UpdateRulesRequest>,
    ) -> Result<Response<proto::RulesInfo>, Status> {
        let from = PathBuf::from(request.into_inner().from_dir);
        let rules = self.rules.clone();
        blocking(move || rules.update(&from)).await
    }

    async fn list_rules(
        &self,
        _: Request<proto::ListRulesRequest>,
    ) -> Result<Response<proto::ListRulesResponse>, Status> {
        Ok(Response::new(proto::ListRulesResponse {
            rules: self.rules.list(),
        }))
    }

    async fn get_rule(
        &self,
        request: Request<proto::GetRuleRequest>,
    ) -> Result<Response<proto::RuleInfo>, Status> {
        let id = request.into_inner().id;
        match self.rules.get(&id) {
            Some(r) => Ok(Response::new(r)),
            None => Err(Status::not_found(bounded(
                &format!("no rule {id:?}"),
                MAX_STATUS_CHARS,
            ))),
        }
    }

    async fn get_health(
        &self,
        _: Request<proto::GetHealthRequest>,
    ) -> Result<Response<proto::Health>, Status> {
        Ok(Response::new(self.health.snapshot()))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Detections big enough that all of them would not fit one 4 MiB message.
    fn big_detections(n: u64) -> DetectionStore {
        let store = DetectionStore::default();
        for seq in 1..=n {
            store.push(Arc::new(proto::Event {
                seq,
                kind: "detection".into(),
                process: Some(
                    proto::ProcessData {
                        args: vec!["A".repeat(2000)],
                        ..Default::default()
                    }
                    .into(),
                ),
                ..Default::default()
            }));
        }
        store
    }

    /// What a client gets by following the detections' page tokens from the start.
    fn every_detection_page(store: &DetectionStore) -> Vec<Vec<proto::Event>> {
        let mut pages = Vec::new();
        let mut token = String::new();
        loop {
            let since = page_offset(&token).unwrap() as u64;
            let (page, more) = page(&store.since(since), 0, 0);
            let next = more.and_then(|_| page.last()).map(|d| d.seq);
            pages.push(page);
            match next {
                Some(seq) => token = seq.to_string(),
                None => return pages,
            }
        }
    }

    #[test]
    fn detection_pages_stay_small_and_together_hold_everything() {
        let store = big_detections(3000);
        let all = store.since(0);
        let whole: usize = all.iter().map(prost::Message::encoded_len).sum();
        assert!(whole > 4 << 20, "the history must exceed the message limit");
        let pages = every_detection_page(&store);
        assert!(pages.len() > 1);
        for p in &pages {
            let bytes: usize = p.iter().map(prost::Message::encoded_len).sum();
            assert!(bytes <= MAX_PAGE_BYTES, "{bytes}");
        }
        let joined: Vec<u64> = pages.concat().iter().map(|e| e.seq).collect();
        assert_eq!(joined, (1..=3000).collect::<Vec<_>>());
    }

    #[test]
    fn pages_honour_page_size_and_end_cleanly() {
        let items: Vec<proto::Threat> = (0..5)
            .map(|i| proto::Threat {
                path: format!("/t/{i}"),
                ..Default::default()
            })
            .collect();
        let (p, next) = page(&items, 0, 2);
        assert_eq!((p.len(), next), (2, Some(2)));
        let (p, next) = page(&items, 4, 2);
        assert_eq!((p.len(), next), (1, None));
        let (p, next) = page(&items, 9, 2);
        assert_eq!((p.len(), next), (0, None));
        let (p, next) = page::<proto::Threat>(&[], 0, 0);
        assert_eq!((p.len(), next), (0, None));
        assert!(page_offset("x").is_err());
    }
}
