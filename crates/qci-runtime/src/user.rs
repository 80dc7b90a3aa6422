//! Resolving an image's `User` (`name`, `uid`, `name:group`, `uid:gid`) against the container's
//! own /etc/passwd and /etc/group, as Docker does.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

pub fn resolve(rootfs: &Path, user: Option<&str>) -> Result<ResolvedUser, String> {
    let spec = user.unwrap_or("").trim();
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    let groups = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 4)
        .collect();
    let (uid, mut gid, name) = if u.is_empty() {
        (0, 0, Some("root".to_string()))
    } else if let Ok(uid) = u.parse::<u32>() {
        let e = entries.iter().find(|f| f[2].parse() == Ok(uid));
        (
            uid,
            e.and_then(|f| f[3].parse().ok()).unwrap_or(0),
            e.map(|f| f[0].to_string()),
        )
    } else {
        let e = entries
            .iter()
            .find(|f| f[0] == u)
            .ok_or_else(|| format!("user {u:?} is not in the image's /etc/passwd"))?;
        (
            e[2].parse()
                .map_err(|_| format!("bad uid for {u:?} in /etc/passwd"))?,
            e[3].parse()
                .map_err(|_| format!("bad gid for {u:?} in /etc/passwd"))?,
            Some(u.to_string()),
        )
    };
    let group_entries: Vec<Vec<&str>> = groups
        .lines()
        .map(|l| l.split(':').collect())
        .filter(|f: &Vec<&str>| f.len() >= 3)
        .collect();
    if let Some(g) = g.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group_entries
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = name {
        for f in &group_entries {
            if f.len() >= 4
                && f[3].split(',').any(|m| m == name)
                && let Ok(n) = f[2].parse::<u32>()
                && n != gid
                && !additional_gids.contains(&n)
            {
                additional_gids.push(n);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nlog:x:4:www\n",
        )
        .unwrap();
        let r = |u| resolve(d.path(), u);
        assert_eq!(
            r(None).unwrap(),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            r(Some("www")).unwrap(),
            ResolvedUser {
                uid: 33,
                gid: 33,
                additional_gids: vec![4]
            }
        );
        assert_eq!(
            r(Some("1000:1000")).unwrap(),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![]
            }
        );
        assert_eq!(r(Some("33:log")).unwrap().gid, 4);
        assert!(r(Some("nobody")).unwrap_err().contains("not in the image"));
    }
}
