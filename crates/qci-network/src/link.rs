//! The netlink operations qci needs, on a handle opened inside the right namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::NetError;

fn nl(what: &str) -> impl FnOnce(rtnetlink::Error) -> NetError + '_ {
    move |source| NetError::Netlink {
        context: what.to_string(),
        source,
    }
}

/// Whether a netlink error is the given errno.
fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// The index of link `name`, if it exists.
pub async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, 19) => Ok(None), // ENODEV
        Err(e) => Err(nl("looking up a link")(e)),
    }
}

async fn must_index(h: &Handle, name: &str) -> Result<u32, NetError> {
    index_of(h, name)
        .await?
        .ok_or_else(|| NetError::LinkMissing(name.to_string()))
}

pub async fn set_up(h: &Handle, name: &str) -> Result<(), NetError> {
    let i = must_index(h, name).await?;
    h.link()
        .set(LinkUnspec::new_with_index(i).up().build())
        .execute()
        .await
        .map_err(nl("setting a link up"))
}

/// A bridge named `name` (kept if it exists), up.
pub async fn ensure_bridge(h: &Handle, name: &str) -> Result<(), NetError> {
    if index_of(h, name).await?.is_none() {
        h.link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(nl("creating a bridge"))?;
    }
    set_up(h, name).await
}

/// A veth pair: `a` here (up, and a port of `bridge` if given) and its peer made directly
/// inside the namespace pinned at `ns` as `b_name`, in one netlink request (moving a link
/// between namespaces afterwards would cost an RCU grace period, ~10 ms). A leftover `a` is
/// removed first.
pub async fn veth_into(
    h: &Handle,
    a: &str,
    bridge: Option<&str>,
    ns: &Path,
    b_name: &str,
) -> Result<(), NetError> {
    if index_of(h, a).await?.is_some() {
        delete(h, a).await?;
    }
    let fd = std::fs::File::open(ns).map_err(NetError::io(format!("opening {}", ns.display())))?;
    let peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
        .name(b_name.to_string())
        .setns_by_fd(fd.as_raw_fd())
        .build();
    let mut msg = rtnetlink::LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(a.to_string())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .up();
    if let Some(b) = bridge {
        msg = msg.controller(must_index(h, b).await?);
    }
    h.link()
        .add(msg.build())
        .execute()
        .await
        .map_err(nl("creating a veth pair"))
}

/// Deletes link `name`; a missing one is fine.
pub async fn delete(h: &Handle, name: &str) -> Result<(), NetError> {
    if let Some(i) = index_of(h, name).await? {
        match h.link().del(i).execute().await {
            Err(e) if is_errno(&e, 19) => {}
            r => r.map_err(nl("deleting a link"))?,
        }
    }
    Ok(())
}

/// The IPv4 addresses on link `name`.
pub async fn addresses(h: &Handle, name: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let Some(i) = index_of(h, name).await? else {
        return Ok(vec![]);
    };
    let mut out = Vec::new();
    let mut s = h.address().get().set_link_index_filter(i).execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing addresses"))? {
        for a in &m.attributes {
            if let AddressAttribute::Address(IpAddr::V4(v4)) = a {
                out.push((*v4, m.header.prefix_len));
            }
        }
    }
    Ok(out)
}

/// Adds `ip/prefix` to link `name` unless it has it.
pub async fn add_address(h: &Handle, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    if addresses(h, name).await?.contains(&(ip, prefix)) {
        return Ok(());
    }
    let i = must_index(h, name).await?;
    match h.address().add(i, IpAddr::V4(ip), prefix).execute().await {
        Err(e) if is_errno(&e, 17) => Ok(()), // EEXIST
        r => r.map_err(nl("adding an address")),
    }
}

/// Removes `ip/prefix` from link `name`, if there.
pub async fn del_address(h: &Handle, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    let Some(i) = index_of(h, name).await? else {
        return Ok(());
    };
    let mut s = h.address().get().set_link_index_filter(i).execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing addresses"))? {
        let has = m
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(v)) if *v == ip));
        if has && m.header.prefix_len == prefix {
            h.address()
                .del(m)
                .execute()
                .await
                .map_err(nl("removing an address"))?;
            break;
        }
    }
    Ok(())
}

/// A route to `dst/len` via `gw` (replacing any to the same place).
pub async fn route(h: &Handle, dst: Ipv4Addr, len: u8, gw: Ipv4Addr) -> Result<(), NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, len)
        .gateway(gw)
        .build();
    h.route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(nl("adding a route"))
}

/// Removes the route to `dst/len`, if any.
pub async fn del_route(h: &Handle, dst: Ipv4Addr, len: u8) -> Result<(), NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, len)
        .build();
    match h.route().del(msg).execute().await {
        Err(e) if is_errno(&e, 3) => Ok(()), // ESRCH
        r => r.map_err(nl("removing a route")),
    }
}

/// Destinations of the IPv4 routes in the main table with prefix `len`.
pub async fn routes(h: &Handle, len: u8) -> Result<Vec<Ipv4Addr>, NetError> {
    Ok(all_routes(h)
        .await?
        .into_iter()
        .filter(|(_, l)| *l == len)
        .map(|(d, _)| d)
        .collect())
}

/// Every IPv4 route of the main table: destination and prefix length.
pub async fn all_routes(h: &Handle) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    let mut out = Vec::new();
    let mut s = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(m) = s.try_next().await.map_err(nl("listing routes"))? {
        let len = m.header.destination_prefix_length;
        let dst = m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
            _ => None,
        });
        out.push((dst.unwrap_or(Ipv4Addr::UNSPECIFIED), len));
    }
    Ok(out)
}
