//! A typed client for qci's HTTP API; the CLI and the tests use it.

use qci_spec::{
    ContainerGroup, Event, FieldError, ImageCache, ImageCacheSpec, ImageInfo, PullEvent,
    PullRequest,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Where clients look when told nothing else.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        fields: Vec<FieldError>,
    },
    #[error(
        "cannot reach qci at {url}: {reason} (is `qci serve` running? set --server or QCI_SERVER)"
    )]
    Connect { url: String, reason: String },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

impl ClientError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    #[serde(default)]
    fields: Vec<FieldError>,
}

#[derive(Deserialize)]
struct Items<T> {
    items: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VersionInfo {
    pub version: String,
}

/// What an exec session sends: standard input (closed when the channel ends), a terminal of
/// (rows, cols), and terminal size changes.
#[derive(Default)]
pub struct ExecIo {
    pub stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    pub tty: Option<(u16, u16)>,
    pub resize: Option<tokio::sync::mpsc::Receiver<(u16, u16)>>,
}

/// Options for [`Client::logs`].
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub container: Option<String>,
    pub tail: Option<usize>,
    pub follow: bool,
    pub timestamps: bool,
    /// The instance before the last restart.
    pub previous: bool,
    /// RFC 3339, or an age such as `10m`.
    pub since: Option<String>,
    pub limit_bytes: Option<usize>,
    /// Only `stdout` or only `stderr` (default both).
    pub stream: Option<String>,
}

/// Who the client is, and where it acts.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The API key sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// PEM certificates to trust for an `https://` server, beside the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Act in this tenant (`?tenant=`; an admin key's choice).
    pub tenant: Option<String>,
    /// Lists show every tenant's (admin).
    pub all_tenants: bool,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    opts: ClientOptions,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Client {
    /// A client with no key (only the OpenAPI document and /healthz answer it).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: plain_http(),
            opts: ClientOptions::default(),
            tls: None,
        }
    }

    /// A client with a key, a CA and a tenant scope.
    pub fn with_options(base: &str, opts: ClientOptions) -> Result<Client, ClientError> {
        let mut c = Client::new(base);
        if c.base.starts_with("https://") {
            let cfg = std::sync::Arc::new(tls_config(opts.ca_pem.as_deref())?);
            c.http = reqwest::Client::builder()
                .tls_backend_preconfigured((*cfg).clone())
                .build()
                .map_err(|e| ClientError::Tls(chain(&e)))?;
            c.tls = Some(cfg);
        }
        c.opts = opts;
        Ok(c)
    }

    /// The same client with another key.
    pub fn with_token(&self, token: &str) -> Client {
        let mut c = self.clone();
        c.opts.token = Some(token.to_string());
        c
    }

    /// The same client acting in `tenant` (an admin key's choice; `None`: the key's own).
    pub fn in_tenant(&self, tenant: Option<&str>) -> Client {
        let mut c = self.clone();
        c.opts.tenant = tenant.map(str::to_string);
        c
    }

    /// The same client listing every tenant's (or not).
    pub fn across_tenants(&self, all: bool) -> Client {
        let mut c = self.clone();
        c.opts.all_tenants = all;
        c
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// The key, and the tenant scope, on every request.
    fn authorize(&self, mut req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(t) = &self.opts.token {
            req = req.bearer_auth(t);
        }
        if let Some(t) = &self.opts.tenant {
            req = req.query(&[("tenant", t)]);
        }
        req
    }

    /// A GET of a list: every tenant's when asked.
    fn get_list(&self, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(url);
        if self.opts.all_tenants {
            req.query(&[("all_tenants", "true")])
        } else {
            req
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .authorize(req)
            .send()
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                reason: root_cause(&e),
            })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => Err(ClientError::Api {
                status,
                code: b.code,
                message: b.message,
                fields: b.fields,
            }),
            Err(_) => Err(ClientError::Protocol {
                url: url.to_string(),
                reason: format!("HTTP {status}: {text}"),
            }),
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(req, url).await?;
        let bytes = resp.bytes().await.map_err(|e| ClientError::Protocol {
            url: url.into(),
            reason: chain(&e),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url: url.into(),
            reason: e.to_string(),
        })
    }

    /// Submits a spec (its YAML or JSON text, as written); the server validates it.
    pub async fn create_group(&self, spec_text: &str) -> Result<ContainerGroup, ClientError> {
        self.send_spec(reqwest::Method::POST, "/v1/container-groups", spec_text)
            .await
    }

    /// A spec (YAML or JSON, typed as such) sent to `path`; the answer as `T`.
    async fn send_spec<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        spec_text: &str,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let ct = spec_content_type(spec_text);
        self.json(
            self.http
                .request(method, &url)
                .header("content-type", ct)
                .body(spec_text.to_string()),
            &url,
        )
        .await
    }

    /// Everything a create checks, nothing stored: the group as it would be.
    pub async fn dry_run_create(&self, spec_text: &str) -> Result<qci_spec::DryRun, ClientError> {
        self.send_spec(
            reqwest::Method::POST,
            "/v1/container-groups?dry_run=true",
            spec_text,
        )
        .await
    }

    /// Everything an update checks, nothing changed: the group as it would be and which
    /// containers the update would recreate.
    pub async fn dry_run_update(
        &self,
        id: &str,
        spec_text: &str,
    ) -> Result<qci_spec::DryRun, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}?dry_run=true", encode(id)));
        let ct = spec_content_type(spec_text);
        self.json(
            self.http
                .put(&url)
                .header("content-type", ct)
                .body(spec_text.to_string()),
            &url,
        )
        .await
    }

    pub async fn list_groups(&self) -> Result<Vec<ContainerGroup>, ClientError> {
        let url = self.url("/v1/container-groups");
        Ok(self
            .json::<Items<ContainerGroup>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    /// A group by id or name.
    pub async fn get_group(&self, id: &str) -> Result<ContainerGroup, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    /// A group once waiting for `want` is over (it got there, or will not by itself), or once
    /// `timeout` has passed: the server answers as soon as the group changes, no polling.
    pub async fn wait_group(
        &self,
        id: &str,
        want: qci_spec::WaitFor,
        timeout: std::time::Duration,
    ) -> Result<ContainerGroup, ClientError> {
        let want = match want {
            qci_spec::WaitFor::Running => "Running",
        };
        let url = self.url(&format!(
            "/v1/container-groups/{}?wait_for={want}&timeout={}",
            encode(id),
            timeout.as_millis()
        ));
        self.json(self.http.get(&url), &url).await
    }

    /// Replaces a group's spec (its YAML or JSON text, as written).
    pub async fn update_group(
        &self,
        id: &str,
        spec_text: &str,
    ) -> Result<ContainerGroup, ClientError> {
        let path = format!("/v1/container-groups/{}", encode(id));
        self.send_spec(reqwest::Method::PUT, &path, spec_text).await
    }

    pub async fn delete_group(&self, id: &str) -> Result<ContainerGroup, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    /// Events across every group, the newest `limit`.
    pub async fn all_events(&self, limit: Option<i64>) -> Result<Vec<Event>, ClientError> {
        let url = self.url("/v1/events");
        let q: Vec<(&str, String)> = limit
            .map(|l| vec![("limit", l.to_string())])
            .unwrap_or_default();
        Ok(self
            .json::<Items<Event>>(self.get_list(&url).query(&q), &url)
            .await?
            .items)
    }

    /// Calls `on_event` for every event of the group, then for each new or repeated one as it
    /// happens, until the group is gone (or `on_event` returns false).
    pub async fn watch_events(
        &self,
        id: &str,
        mut on_event: impl FnMut(Event) -> bool,
    ) -> Result<(), ClientError> {
        use futures_util::StreamExt;
        let url = self.url(&format!("/v1/container-groups/{}/events", encode(id)));
        let resp = self
            .send(self.http.get(&url).query(&[("watch", "true")]), &url)
            .await?;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| ClientError::Protocol {
                url: url.clone(),
                reason: chain(&e),
            })?);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                let line = String::from_utf8_lossy(&line);
                if let Some(data) = line.trim_end().strip_prefix("data:")
                    && let Ok(e) = serde_json::from_str::<Event>(data.trim())
                    && !on_event(e)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Runs `argv` in a running container over the exec WebSocket: stdout and stderr go to the
    /// callbacks; `stdin` (if any) is sent, then closed. Returns the command's exit code.
    pub async fn exec(
        &self,
        id: &str,
        container: &str,
        argv: &[String],
        io: ExecIo,
        mut on_output: impl FnMut(u8, &[u8]) + Send,
    ) -> Result<i32, ClientError> {
        let command = serde_json::to_string(argv).unwrap_or_default();
        let mut url = format!(
            "{}/v1/container-groups/{}/containers/{}/exec?command={}",
            self.base.replacen("http", "ws", 1),
            encode(id),
            encode(container),
            encode(&command)
        );
        if let Some((rows, cols)) = io.tty {
            url.push_str(&format!("&tty=true&rows={rows}&cols={cols}"));
        }
        self.session(url, io, &mut on_output).await
    }

    /// Attaches to a running container's first process (one with `stdin` or `tty`): its
    /// output goes to the callback (after a replay of its latest); `stdin` (if any) is sent,
    /// then closed; `resize` sizes its terminal. Returns its exit code once it ends.
    pub async fn attach(
        &self,
        id: &str,
        container: &str,
        io: ExecIo,
        mut on_output: impl FnMut(u8, &[u8]) + Send,
    ) -> Result<i32, ClientError> {
        let url = format!(
            "{}/v1/container-groups/{}/containers/{}/attach?",
            self.base.replacen("http", "ws", 1),
            encode(id),
            encode(container),
        );
        self.session(url, io, &mut on_output).await
    }

    /// One exec or attach WebSocket session (`url` ends in a query, maybe empty).
    async fn session(
        &self,
        mut url: String,
        io: ExecIo,
        on_output: &mut (dyn FnMut(u8, &[u8]) + Send),
    ) -> Result<i32, ClientError> {
        let ExecIo {
            stdin,
            tty: _,
            mut resize,
        } = io;
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        if let Some(t) = &self.opts.tenant {
            url.push_str(&format!("&tenant={}", encode(t)));
        }
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|e| ClientError::Protocol {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        if let Some(t) = &self.opts.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            request.headers_mut().insert("authorization", v);
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let (ws, _) =
            match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector)
                .await
            {
                Ok(c) => c,
                Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                    let status = resp.status().as_u16();
                    let body = resp.body().clone().unwrap_or_default();
                    let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
                        Ok(b) => (b.code, b.message),
                        Err(_) => ("Error".into(), String::from_utf8_lossy(&body).into_owned()),
                    };
                    return Err(ClientError::Api {
                        status,
                        code,
                        message,
                        fields: vec![],
                    });
                }
                Err(e) => {
                    return Err(ClientError::Connect {
                        url: self.base.clone(),
                        reason: root_cause(&e),
                    });
                }
            };
        let (mut tx, mut rx) = ws.split();
        let protocol = |reason: String| ClientError::Protocol {
            url: url.clone(),
            reason,
        };
        // Dropping this call (a user's Ctrl-C, a timeout) must close the connection too.
        struct AbortOnDrop(tokio::task::JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let sender = AbortOnDrop(tokio::spawn(async move {
            let mut input = stdin;
            if input.is_none() && tx.send(Message::Binary(vec![0u8].into())).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    chunk = async { match input.as_mut() { Some(i) => i.recv().await, None => std::future::pending().await } } => {
                        let mut frame = vec![0u8];
                        match chunk {
                            Some(c) => frame.extend_from_slice(&c),
                            // End of input: an empty stdin frame closes the command's stdin.
                            None => input = None,
                        }
                        if tx.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    size = async { match resize.as_mut() { Some(r) => r.recv().await, None => std::future::pending().await } } => {
                        match size {
                            Some((rows, cols)) => {
                                let mut frame = vec![4u8];
                                frame.extend_from_slice(serde_json::json!({"rows": rows, "cols": cols}).to_string().as_bytes());
                                if tx.send(Message::Binary(frame.into())).await.is_err() {
                                    return;
                                }
                            }
                            None => resize = None,
                        }
                    }
                }
            }
        }));
        let mut code = None;
        while let Some(msg) = rx.next().await {
            match msg.map_err(|e| protocol(e.to_string()))? {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    1 | 2 => on_output(b[0], &b[1..]),
                    3 => {
                        let v: serde_json::Value =
                            serde_json::from_slice(&b[1..]).map_err(|e| protocol(e.to_string()))?;
                        if let Some(err) = v["error"].as_str() {
                            return Err(ClientError::Api {
                                status: 500,
                                code: "ExecFailed".into(),
                                message: err.to_string(),
                                fields: vec![],
                            });
                        }
                        code = v["exit_code"].as_i64().map(|c| c as i32);
                    }
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        drop(sender);
        code.ok_or_else(|| protocol("the exec session ended without an exit status".into()))
    }

    pub async fn restart_group(&self, id: &str) -> Result<ContainerGroup, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}/restart", encode(id)));
        self.json(self.http.post(&url), &url).await
    }

    pub async fn events(&self, id: &str) -> Result<Vec<Event>, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}/events", encode(id)));
        Ok(self
            .json::<Items<Event>>(self.http.get(&url), &url)
            .await?
            .items)
    }

    /// The log response; read it whole, or chunk by chunk when following.
    pub async fn logs(
        &self,
        id: &str,
        opts: &LogOptions,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}/logs", encode(id)));
        let mut q: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &opts.container {
            q.push(("container", c.clone()));
        }
        if let Some(t) = opts.tail {
            q.push(("tail", t.to_string()));
        }
        if opts.follow {
            q.push(("follow", "true".into()));
        }
        if opts.timestamps {
            q.push(("timestamps", "true".into()));
        }
        if let Some(st) = &opts.stream {
            q.push(("stream", st.clone()));
        }
        if opts.previous {
            q.push(("previous", "true".into()));
        }
        if let Some(s) = &opts.since {
            q.push(("since", s.clone()));
        }
        if let Some(n) = opts.limit_bytes {
            q.push(("limit_bytes", n.to_string()));
        }
        self.send(self.http.get(&url).query(&q), &url).await
    }

    pub async fn list_images(&self) -> Result<Vec<ImageInfo>, ClientError> {
        let url = self.url("/v1/images");
        Ok(self
            .json::<Items<ImageInfo>>(self.http.get(&url), &url)
            .await?
            .items)
    }

    pub async fn remove_image(&self, reference: &str) -> Result<(), ClientError> {
        let url = self.url("/v1/images");
        self.send(
            self.http.delete(&url).query(&[("reference", reference)]),
            &url,
        )
        .await?;
        Ok(())
    }

    /// Pulls an image into the server's store, calling `on_progress` as blobs download.
    pub async fn pull_image(
        &self,
        req: &PullRequest,
        mut on_progress: impl FnMut(&str, u64, u64),
    ) -> Result<ImageInfo, ClientError> {
        use futures_util::StreamExt;
        let url = self.url("/v1/images/pull");
        let resp = self.send(self.http.post(&url).json(req), &url).await?;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let protocol = |reason: String| ClientError::Protocol {
            url: url.clone(),
            reason,
        };
        while let Some(chunk) = body.next().await {
            buf.extend_from_slice(&chunk.map_err(|e| protocol(chain(&e)))?);
            while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                match serde_json::from_slice::<PullEvent>(&line)
                    .map_err(|e| protocol(e.to_string()))?
                {
                    PullEvent::Progress {
                        digest,
                        done,
                        total,
                    } => on_progress(&digest, done, total),
                    PullEvent::Image(info) => return Ok(info),
                    PullEvent::Error(message) => {
                        return Err(ClientError::Api {
                            status: 502,
                            code: "PullFailed".into(),
                            message,
                            fields: vec![],
                        });
                    }
                }
            }
        }
        Err(protocol("the pull ended without a result".into()))
    }

    /// Runs image garbage collection; the server's report.
    /// Loads the images of an archive (an OCI layout or docker-archive tar) read from `body`
    /// into the server's store, under `tag` or the archive's own names.
    pub async fn load_image(
        &self,
        body: reqwest::Body,
        tag: Option<&str>,
    ) -> Result<Vec<ImageInfo>, ClientError> {
        let url = self.url("/v1/images/load");
        let mut req = self
            .http
            .post(&url)
            .header("content-type", "application/x-tar")
            .body(body);
        if let Some(t) = tag {
            req = req.query(&[("tag", t)]);
        }
        Ok(self.json::<Items<ImageInfo>>(req, &url).await?.items)
    }

    /// An image of the server's store as an OCI layout tar, to read as a stream.
    pub async fn save_image(&self, reference: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.url("/v1/images/save");
        self.send(self.http.get(&url).query(&[("reference", reference)]), &url)
            .await
    }

    /// Gives an image of the server's store a second name.
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<ImageInfo, ClientError> {
        let url = self.url("/v1/images/tag");
        self.json(
            self.http
                .post(&url)
                .json(&serde_json::json!({"source": source, "target": target})),
            &url,
        )
        .await
    }

    pub async fn prune_images(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url("/v1/images/prune");
        self.json(self.http.post(&url), &url).await
    }

    pub async fn create_image_cache(
        &self,
        spec: &ImageCacheSpec,
    ) -> Result<ImageCache, ClientError> {
        let url = self.url("/v1/image-caches");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_image_caches(&self) -> Result<Vec<ImageCache>, ClientError> {
        let url = self.url("/v1/image-caches");
        Ok(self
            .json::<Items<ImageCache>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_image_cache(&self, id: &str) -> Result<ImageCache, ClientError> {
        let url = self.url(&format!("/v1/image-caches/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    pub async fn delete_image_cache(&self, id: &str) -> Result<ImageCache, ClientError> {
        let url = self.url(&format!("/v1/image-caches/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    pub async fn create_disk(
        &self,
        spec: &qci_spec::DiskSpec,
    ) -> Result<qci_spec::Disk, ClientError> {
        let url = self.url("/v1/disks");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    /// The nodes (admin keys): the cluster's, or this machine alone.
    pub async fn list_nodes(&self) -> Result<Vec<qci_spec::Node>, ClientError> {
        let url = self.url("/v1/nodes");
        Ok(self
            .json::<Items<qci_spec::Node>>(self.http.get(&url), &url)
            .await?
            .items)
    }

    pub async fn get_node(&self, name: &str) -> Result<qci_spec::Node, ClientError> {
        let url = self.url(&format!("/v1/nodes/{}", encode(name)));
        self.json(self.http.get(&url), &url).await
    }

    /// Cordons a node (no new groups on it), or uncordons it.
    pub async fn cordon_node(
        &self,
        name: &str,
        cordoned: bool,
    ) -> Result<qci_spec::Node, ClientError> {
        let verb = if cordoned { "cordon" } else { "uncordon" };
        let url = self.url(&format!("/v1/nodes/{}/{verb}", encode(name)));
        self.json(self.http.post(&url), &url).await
    }

    pub async fn list_disks(&self) -> Result<Vec<qci_spec::Disk>, ClientError> {
        let url = self.url("/v1/disks");
        Ok(self
            .json::<Items<qci_spec::Disk>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_disk(&self, id: &str) -> Result<qci_spec::Disk, ClientError> {
        let url = self.url(&format!("/v1/disks/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    pub async fn delete_disk(&self, id: &str) -> Result<qci_spec::Disk, ClientError> {
        let url = self.url(&format!("/v1/disks/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    /// Grows a disk to `size` (a quantity such as "20Gi").
    pub async fn resize_disk(&self, id: &str, size: &str) -> Result<qci_spec::Disk, ClientError> {
        let url = self.url(&format!("/v1/disks/{}/resize", encode(id)));
        let body = qci_spec::DiskResize {
            size: qci_spec::Quantity(size.to_string()),
        };
        self.json(self.http.post(&url).json(&body), &url).await
    }

    pub async fn create_vpc(&self, spec: &qci_spec::VpcSpec) -> Result<qci_spec::Vpc, ClientError> {
        let url = self.url("/v1/vpcs");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_vpcs(&self) -> Result<Vec<qci_spec::Vpc>, ClientError> {
        let url = self.url("/v1/vpcs");
        Ok(self
            .json::<Items<qci_spec::Vpc>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_vpc(&self, id: &str) -> Result<qci_spec::Vpc, ClientError> {
        let url = self.url(&format!("/v1/vpcs/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    /// Sets (or with None clears) a VPC's firewall.
    pub async fn update_vpc(
        &self,
        id: &str,
        firewall: Option<&str>,
    ) -> Result<qci_spec::Vpc, ClientError> {
        let url = self.url(&format!("/v1/vpcs/{}", encode(id)));
        let body = qci_spec::VpcUpdate {
            firewall: firewall.map(str::to_string),
        };
        self.json(self.http.put(&url).json(&body), &url).await
    }

    pub async fn delete_vpc(&self, id: &str) -> Result<qci_spec::Vpc, ClientError> {
        let url = self.url(&format!("/v1/vpcs/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    pub async fn create_eip(&self, spec: &qci_spec::EipSpec) -> Result<qci_spec::Eip, ClientError> {
        let url = self.url("/v1/eips");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_eips(&self) -> Result<Vec<qci_spec::Eip>, ClientError> {
        let url = self.url("/v1/eips");
        Ok(self
            .json::<Items<qci_spec::Eip>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_eip(&self, id: &str) -> Result<qci_spec::Eip, ClientError> {
        let url = self.url(&format!("/v1/eips/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    pub async fn delete_eip(&self, id: &str) -> Result<qci_spec::Eip, ClientError> {
        let url = self.url(&format!("/v1/eips/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    pub async fn bind_eip(&self, id: &str, vpc: &str) -> Result<qci_spec::Eip, ClientError> {
        let url = self.url(&format!("/v1/eips/{}/bind", encode(id)));
        let body = qci_spec::EipBind {
            vpc: vpc.to_string(),
        };
        self.json(self.http.post(&url).json(&body), &url).await
    }

    pub async fn unbind_eip(&self, id: &str) -> Result<qci_spec::Eip, ClientError> {
        let url = self.url(&format!("/v1/eips/{}/unbind", encode(id)));
        self.json(self.http.post(&url), &url).await
    }

    pub async fn create_firewall(
        &self,
        spec: &qci_spec::FirewallSpec,
    ) -> Result<qci_spec::Firewall, ClientError> {
        let url = self.url("/v1/firewalls");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_firewalls(&self) -> Result<Vec<qci_spec::Firewall>, ClientError> {
        let url = self.url("/v1/firewalls");
        Ok(self
            .json::<Items<qci_spec::Firewall>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_firewall(&self, id: &str) -> Result<qci_spec::Firewall, ClientError> {
        let url = self.url(&format!("/v1/firewalls/{}", encode(id)));
        self.json(self.http.get(&url), &url).await
    }

    pub async fn update_firewall(
        &self,
        id: &str,
        spec: &qci_spec::FirewallSpec,
    ) -> Result<qci_spec::Firewall, ClientError> {
        let url = self.url(&format!("/v1/firewalls/{}", encode(id)));
        self.json(self.http.put(&url).json(spec), &url).await
    }

    pub async fn delete_firewall(&self, id: &str) -> Result<qci_spec::Firewall, ClientError> {
        let url = self.url(&format!("/v1/firewalls/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    /// Metered use per group in a time window.
    pub async fn usage(
        &self,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Vec<qci_spec::Usage>, ClientError> {
        let url = self.url("/v1/usage");
        let mut q = Vec::new();
        if let Some(f) = from {
            q.push(("from", f.to_rfc3339()));
        }
        if let Some(t) = to {
            q.push(("to", t.to_rfc3339()));
        }
        Ok(self
            .json::<Items<qci_spec::Usage>>(self.get_list(&url).query(&q), &url)
            .await?
            .items)
    }

    /// A group's resource use since `since` (RFC 3339 or an age such as `10m`).
    pub async fn metrics(
        &self,
        id: &str,
        since: Option<&str>,
    ) -> Result<Vec<qci_spec::MetricSample>, ClientError> {
        let url = self.url(&format!("/v1/container-groups/{}/metrics", encode(id)));
        let q: Vec<(&str, &str)> = since.map(|s| vec![("since", s)]).unwrap_or_default();
        Ok(self
            .json::<Items<qci_spec::MetricSample>>(self.http.get(&url).query(&q), &url)
            .await?
            .items)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn prometheus(&self) -> Result<String, ClientError> {
        let url = self.url("/metrics");
        let resp = self.send(self.http.get(&url), &url).await?;
        resp.text().await.map_err(|e| ClientError::Protocol {
            url,
            reason: chain(&e),
        })
    }

    pub async fn create_tenant(
        &self,
        spec: &qci_spec::TenantSpec,
    ) -> Result<qci_spec::Tenant, ClientError> {
        let url = self.url("/v1/tenants");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_tenants(&self) -> Result<Vec<qci_spec::Tenant>, ClientError> {
        let url = self.url("/v1/tenants");
        Ok(self
            .json::<Items<qci_spec::Tenant>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn get_tenant(&self, name: &str) -> Result<qci_spec::Tenant, ClientError> {
        let url = self.url(&format!("/v1/tenants/{}", encode(name)));
        self.json(self.http.get(&url), &url).await
    }

    /// Replaces a tenant's quota.
    pub async fn update_tenant(
        &self,
        name: &str,
        update: &qci_spec::TenantUpdate,
    ) -> Result<qci_spec::Tenant, ClientError> {
        let url = self.url(&format!("/v1/tenants/{}", encode(name)));
        self.json(self.http.put(&url).json(update), &url).await
    }

    pub async fn delete_tenant(&self, name: &str) -> Result<qci_spec::Tenant, ClientError> {
        let url = self.url(&format!("/v1/tenants/{}", encode(name)));
        self.json(self.http.delete(&url), &url).await
    }

    /// Makes a key; the answer holds the key itself, shown this once.
    pub async fn create_key(
        &self,
        spec: &qci_spec::KeySpec,
    ) -> Result<qci_spec::CreatedKey, ClientError> {
        let url = self.url("/v1/keys");
        self.json(self.http.post(&url).json(spec), &url).await
    }

    pub async fn list_keys(&self) -> Result<Vec<qci_spec::ApiKey>, ClientError> {
        let url = self.url("/v1/keys");
        Ok(self
            .json::<Items<qci_spec::ApiKey>>(self.get_list(&url), &url)
            .await?
            .items)
    }

    pub async fn revoke_key(&self, id: &str) -> Result<qci_spec::ApiKey, ClientError> {
        let url = self.url(&format!("/v1/keys/{}", encode(id)));
        self.json(self.http.delete(&url), &url).await
    }

    /// The audit trail since `since` (RFC 3339 or an age such as `1h`).
    pub async fn audit(
        &self,
        since: Option<&str>,
    ) -> Result<Vec<qci_spec::AuditRecord>, ClientError> {
        let url = self.url("/v1/audit");
        let q: Vec<(&str, &str)> = since.map(|s| vec![("since", s)]).unwrap_or_default();
        Ok(self
            .json::<Items<qci_spec::AuditRecord>>(self.get_list(&url).query(&q), &url)
            .await?
            .items)
    }

    /// The key in use: its id, tenant and role.
    pub async fn whoami(&self) -> Result<qci_spec::WhoAmI, ClientError> {
        let url = self.url("/v1/whoami");
        self.json(self.http.get(&url), &url).await
    }

    pub async fn version(&self) -> Result<VersionInfo, ClientError> {
        let url = self.url("/v1/version");
        self.json(self.http.get(&url), &url).await
    }

    /// The raw OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url("/v1/openapi.json");
        self.json(self.http.get(&url), &url).await
    }
}

/// The HTTP client for an `http://` server. `reqwest::Client::new()` reads and parses every
/// certificate the system trusts (about 150 files, most of a CLI command's start-up time) for
/// TLS it would never use here; this one is given a TLS setup that trusts nothing, so an
/// `https://` URL reaching it fails instead of being trusted (`with_options` makes the real one).
fn plain_http() -> reqwest::Client {
    let no_roots = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(no_roots)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// TLS for an `https://` server: the system's roots, plus `ca_pem`'s certificates.
fn tls_config(ca_pem: Option<&[u8]>) -> Result<rustls::ClientConfig, ClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Tls(format!("the CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Tls(format!("the CA file: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(ClientError::Tls(
                "the CA file holds no PEM certificate".into(),
            ));
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The innermost cause ("Connection refused (os error 111)"): what a user can act on.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A spec's text is sent as written: JSON if it looks like JSON, else YAML.
fn spec_content_type(text: &str) -> &'static str {
    if text.trim_start().starts_with('{') {
        "application/json"
    } else {
        "application/yaml"
    }
}

/// An error with its causes, for messages a user reads.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Percent-encodes a path segment (ids and names are plain, but a user may type anything).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
