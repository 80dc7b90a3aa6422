//! `qci image-cache create|ls|get|rm`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use qci_client::Client;
use qci_spec::{CachePhase, ImageCache, ImageCacheSpec};

use super::{age, print_as, table};
use crate::cli::{CacheCommand, CacheCreateArgs};

pub async fn run(client: &Client, c: CacheCommand) -> anyhow::Result<ExitCode> {
    match c {
        CacheCommand::Create(a) => create(client, a).await,
        CacheCommand::Ls(o) => {
            let caches = client.list_image_caches().await?;
            if let Some(o) = o.output
                && print_as(&caches, o)?
            {
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![
                ["ID", "NAME", "STATUS", "IMAGES", "SIZE", "AGE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for c in caches {
                rows.push(vec![
                    c.id.clone(),
                    c.name.clone(),
                    c.status.phase.to_string(),
                    c.spec.images.len().to_string(),
                    super::image::human(c.status.total_size),
                    age(c.created_at),
                ]);
            }
            print!("{}", table(&rows));
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Get(a) => {
            let c = client.get_image_cache(&a.group).await?;
            match a.output {
                Some(o) if print_as(&c, o)? => {}
                _ => print!("{}", summary(&c)),
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCommand::Rm { cache } => {
            let c = client.delete_image_cache(&cache).await?;
            println!("{} deleted", c.id);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The credential `--username` and the password on standard input make, for the one
/// registry the images come from.
fn credentials(
    images: &[String],
    username: Option<String>,
) -> anyhow::Result<Vec<qci_spec::RegistryCredential>> {
    let Some(username) = username else {
        return Ok(vec![]);
    };
    let registries: std::collections::BTreeSet<String> =
        images.iter().map(|i| qci_spec::image_registry(i)).collect();
    if registries.len() > 1 {
        bail!(
            "--username logs in to one registry, but the images come from {}: \
             create one cache per registry, or give registry_credentials through the API",
            registries.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(registries
        .into_iter()
        .map(|server| qci_spec::RegistryCredential {
            server,
            username: username.clone(),
            password: String::new(),
        })
        .collect())
}

async fn create(client: &Client, a: CacheCreateArgs) -> anyhow::Result<ExitCode> {
    let mut registry_credentials = credentials(&a.images, a.username)?;
    if !registry_credentials.is_empty() {
        let password = super::image::read_password()?;
        for c in &mut registry_credentials {
            c.password = password.clone();
        }
    }
    let spec = ImageCacheSpec {
        name: a.name,
        images: a.images,
        registry_credentials,
    };
    let c = client.create_image_cache(&spec).await?;
    println!("{}", c.id);
    if !a.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let start = Instant::now();
    loop {
        let c = client.get_image_cache(&c.id).await?;
        match c.status.phase {
            CachePhase::Ready => return Ok(ExitCode::SUCCESS),
            CachePhase::Failed => bail!(
                "image cache {} failed: {}",
                c.name,
                c.status.message.unwrap_or_default()
            ),
            CachePhase::Creating if start.elapsed() > Duration::from_secs(a.timeout) => {
                bail!(
                    "image cache {} is still Creating after {}s",
                    c.name,
                    a.timeout
                )
            }
            CachePhase::Creating => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn summary(c: &ImageCache) -> String {
    let mut s = format!(
        "Name:      {}\nID:        {}\nStatus:    {}\nCreated:   {} ({} ago)\nSize:      {}\n",
        c.name,
        c.id,
        c.status.phase,
        c.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        age(c.created_at),
        super::image::human(c.status.total_size)
    );
    if let Some(m) = &c.status.message {
        s.push_str(&format!("Message:   {m}\n"));
    }
    s.push('\n');
    let mut rows = vec![["IMAGE", "DIGEST", "SIZE"].map(String::from).to_vec()];
    for image in &c.spec.images {
        let got = c.status.images.iter().find(|i| &i.reference == image);
        rows.push(vec![
            image.clone(),
            got.map(|i| i.digest.clone()).unwrap_or_else(|| "-".into()),
            got.map(|i| super::image::human(i.size))
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    s.push_str(&table(&rows));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_login_for_the_images_registry() {
        let imgs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(credentials(&imgs(&["r:5000/a"]), None).unwrap().is_empty());
        let c = credentials(&imgs(&["r:5000/a", "r:5000/b:1"]), Some("u".into())).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(
            (c[0].server.as_str(), c[0].username.as_str()),
            ("r:5000", "u")
        );
        let e = credentials(&imgs(&["r:5000/a", "busybox"]), Some("u".into())).unwrap_err();
        assert!(e.to_string().contains("docker.io, r:5000"), "{e}");
    }
}
