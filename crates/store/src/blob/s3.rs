//! [`S3Store`]: blobs and records in an S3-compatible bucket, through `object_store`.

use std::{ops::Range, path::PathBuf, sync::Arc, time::SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{
    aws::AmazonS3Builder, path::Path as ObjectPath, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{check_key, BlobError, BlobMeta, BlobStore, ByteStream, Children, Committed, Digest, MetaStore, Spool, Spooled};

/// Part size of multipart uploads (S3 needs ≥ 5 MiB except the last part).
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded concurrently.
const PART_CONCURRENCY: usize = 4;

/// Where the bucket is.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// `http://host:port` for S3-compatible servers; `None` for AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Key prefix inside the bucket (no leading or trailing `/`).
    pub prefix: Option<String>,
    /// Local directory for upload spool files.
    pub spool_dir: PathBuf,
}

/// Blobs and records as objects: `PREFIX/blobs/sha256/ab/<hex>`, `PREFIX/meta/<key>`,
/// `PREFIX/touch/sha256/<hex>` (last-use marks for garbage collection). Uploads are spooled
/// to a local directory and written to the bucket only after their digest verified.
#[derive(Debug, Clone)]
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    spool: Spool,
}

fn os_err<'a>(action: &'static str, key: &'a ObjectPath) -> impl FnOnce(object_store::Error) -> BlobError + 'a {
    move |source| BlobError::ObjectStore { action, key: key.to_string(), source }
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

fn modified(meta: &object_store::ObjectMeta) -> SystemTime {
    let secs = meta.last_modified.timestamp();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

impl S3Store {
    pub fn open(options: S3Options) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::new().with_bucket_name(&options.bucket);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        builder = builder.with_region(options.region.clone().unwrap_or_else(|| "us-east-1".to_owned()));
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder.build().map_err(|source| BlobError::ObjectStore { action: "configuring bucket", key: options.bucket.clone(), source })?;
        std::fs::create_dir_all(&options.spool_dir).map_err(|source| BlobError::Io { action: "creating", path: options.spool_dir.clone(), source })?;
        let prefix = options.prefix.clone().unwrap_or_default().trim_matches('/').to_owned();
        Ok(S3Store { store: Arc::new(store), prefix, spool: Spool::new(options.spool_dir) })
    }

    fn key(&self, rest: &str) -> ObjectPath {
        if self.prefix.is_empty() { ObjectPath::from(rest) } else { ObjectPath::from(format!("{}/{rest}", self.prefix)) }
    }

    fn blob_key(&self, digest: &Digest) -> ObjectPath {
        let hex = digest.hex();
        self.key(&format!("blobs/sha256/{}/{hex}", &hex[..2]))
    }

    fn touch_key(&self, digest: &Digest) -> ObjectPath {
        self.key(&format!("touch/sha256/{}", digest.hex()))
    }

    fn meta_key(&self, key: &str) -> Result<ObjectPath, BlobError> {
        check_key(key)?;
        Ok(self.key(&format!("meta/{}", key.trim_end_matches('/'))))
    }

    async fn head(&self, key: &ObjectPath) -> Result<Option<object_store::ObjectMeta>, BlobError> {
        match self.store.head(key).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::ObjectStore { action: "reading", key: key.to_string(), source }),
        }
    }

    /// Upload a local file to `key` in parts.
    async fn upload_file(&self, path: &std::path::Path, key: &ObjectPath) -> Result<(), BlobError> {
        let mut file = tokio::fs::File::open(path).await.map_err(|source| BlobError::Io { action: "opening", path: path.to_owned(), source })?;
        let upload = self.store.put_multipart(key).await.map_err(os_err("uploading", key))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(source) => {
                    let _ = writer.abort().await;
                    return Err(BlobError::Io { action: "reading", path: path.to_owned(), source });
                }
            };
            if n == 0 {
                break;
            }
            if let Err(source) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                return Err(BlobError::ObjectStore { action: "uploading", key: key.to_string(), source });
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(os_err("uploading", key))?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3Store {
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobMeta>, BlobError> {
        let Some(meta) = self.head(&self.blob_key(digest)).await? else { return Ok(None) };
        let mut last = modified(&meta);
        if let Some(touch) = self.head(&self.touch_key(digest)).await? {
            last = last.max(modified(&touch));
        }
        Ok(Some(BlobMeta { size: meta.size, modified: last }))
    }

    async fn open(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, BlobError> {
        let key = self.blob_key(digest);
        let mut options = GetOptions::default();
        if let Some(range) = range {
            if range.is_empty() {
                return Ok(Box::pin(futures::stream::empty()));
            }
            options.range = Some(GetRange::Bounded(range));
        }
        let result = match self.store.get_opts(&key, options).await {
            Ok(r) => r,
            Err(e) if is_not_found(&e) => return Err(BlobError::NotFound { digest: digest.clone() }),
            Err(source) => return Err(BlobError::ObjectStore { action: "reading", key: key.to_string(), source }),
        };
        Ok(Box::pin(result.into_stream().map_err(std::io::Error::other)))
    }

    async fn commit(&self, spooled: Spooled, expected: &Digest) -> Result<Committed, BlobError> {
        if &spooled.digest != expected {
            let _ = tokio::fs::remove_file(&spooled.path).await;
            return Err(BlobError::DigestMismatch { expected: expected.clone(), actual: spooled.digest });
        }
        let key = self.blob_key(expected);
        let result = if self.head(&key).await?.is_some() {
            self.touch(expected).await.map(|()| Committed { size: spooled.size, created: false })
        } else {
            self.upload_file(&spooled.path, &key).await.map(|()| Committed { size: spooled.size, created: true })
        };
        let _ = tokio::fs::remove_file(&spooled.path).await;
        result
    }

    async fn put_bytes(&self, bytes: Bytes) -> Result<Digest, BlobError> {
        let digest = Digest::of(&bytes);
        let key = self.blob_key(&digest);
        self.store.put(&key, PutPayload::from_bytes(bytes)).await.map_err(os_err("writing", &key))?;
        Ok(digest)
    }

    async fn read_bytes(&self, digest: &Digest) -> Result<Option<Bytes>, BlobError> {
        let key = self.blob_key(digest);
        match self.store.get(&key).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(os_err("reading", &key))?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::ObjectStore { action: "reading", key: key.to_string(), source }),
        }
    }

    async fn touch(&self, digest: &Digest) -> Result<(), BlobError> {
        let key = self.touch_key(digest);
        self.store.put(&key, PutPayload::default()).await.map_err(os_err("writing", &key))?;
        Ok(())
    }

    async fn delete(&self, digest: &Digest) -> Result<(), BlobError> {
        for key in [self.blob_key(digest), self.touch_key(digest)] {
            match self.store.delete(&key).await {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => {}
                Err(source) => return Err(BlobError::ObjectStore { action: "removing", key: key.to_string(), source }),
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(Digest, BlobMeta)>, BlobError> {
        let mut touched = std::collections::HashMap::new();
        let touch_prefix = self.key("touch/sha256");
        let mut stream = self.store.list(Some(&touch_prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(os_err("listing", &touch_prefix))?;
            if let Some(name) = meta.location.filename() {
                touched.insert(name.to_owned(), modified(&meta));
            }
        }
        let prefix = self.key("blobs/sha256");
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(os_err("listing", &prefix))?;
            let Some(name) = meta.location.filename() else { continue };
            let Ok(digest) = Digest::parse(&format!("sha256:{name}")) else { continue };
            let mut last = modified(&meta);
            if let Some(t) = touched.get(name) {
                last = last.max(*t);
            }
            out.push((digest, BlobMeta { size: meta.size, modified: last }));
        }
        Ok(out)
    }

    fn spool(&self) -> &Spool {
        &self.spool
    }
}

#[async_trait]
impl MetaStore for S3Store {
    async fn put(&self, key: &str, value: Bytes) -> Result<(), BlobError> {
        let key = self.meta_key(key)?;
        self.store.put(&key, PutPayload::from_bytes(value)).await.map_err(os_err("writing", &key))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let key = self.meta_key(key)?;
        match self.store.get(&key).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(os_err("reading", &key))?)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::ObjectStore { action: "reading", key: key.to_string(), source }),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let key = self.meta_key(key)?;
        Ok(self.head(&key).await?.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let key = self.meta_key(key)?;
        match self.store.delete(&key).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(BlobError::ObjectStore { action: "removing", key: key.to_string(), source }),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let base = self.meta_key(prefix)?;
        let base_str = format!("{base}/");
        let mut out = Vec::new();
        let mut stream = self.store.list(Some(&base));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(os_err("listing", &base))?;
            if let Some(rel) = meta.location.as_ref().strip_prefix(&base_str) {
                out.push(rel.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    async fn children(&self, prefix: &str) -> Result<Children, BlobError> {
        let base = self.meta_key(prefix)?;
        let listing = self.store.list_with_delimiter(Some(&base)).await.map_err(os_err("listing", &base))?;
        let mut out = Children::default();
        out.records = listing.objects.iter().filter_map(|m| m.location.filename().map(str::to_owned)).collect();
        out.prefixes = listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect();
        out.records.sort();
        out.prefixes.sort();
        Ok(out)
    }
}
