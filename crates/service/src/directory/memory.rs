//! The provisioned directory in memory, on every replica: read on every authentication that
//! needs it (an OpenID token, a proxy's header, a token table rebuild) and by the policy
//! (managers, members), never waiting on the database. Every change is applied where it
//! lands (one user, one group, the members that came or went), never by copying the whole.
//!
//! Principals compare exactly (as the rest of jitgate does) for what a principal holds
//! (groups, manager), and ASCII case-insensitively for what refuses (blocked, taken): `Alice`
//! signing in must not escape `alice`'s deactivation, nor take her name.

use jitgate_core::scim::{MemberChange, ScimGroup, ScimSnapshot, ScimUser};
use jitgate_core::Timestamp;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long a principal counts as leaving while the change that ends its access is being
/// computed and written: long past any write, short enough that a write that failed does not
/// keep a person locked out for long (the provider retries, or the next change decides).
pub(crate) const LEAVING_FOR: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    principal: String,
    active: bool,
    manager_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct Group {
    name: String,
    members: HashSet<String>,
}

#[derive(Debug, Default)]
struct State {
    /// Live users by SCIM id.
    users: HashMap<String, User>,
    /// Live users' ids by principal, exactly.
    by_principal: HashMap<String, String>,
    /// Live users' ids by principal, lowercase (unique among live users).
    by_principal_key: HashMap<String, String>,
    groups: HashMap<String, Group>,
    /// Group ids by name, lowercase (unique among groups).
    group_by_key: HashMap<String, String>,
    /// Each user's groups (ids): what changes when a user leaves, without scanning groups.
    groups_of: HashMap<String, BTreeSet<String>>,
    /// Lowercase principals of deleted users, and old principals of renamed users, that no
    /// live user holds again, with why. Only deletions are kept by the store (tombstones): a
    /// rename's old principal is remembered here until the process restarts.
    departed: HashMap<String, Blocked>,
}

/// Why a principal may not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// `active = false`.
    Deactivated,
    /// Deleted, and no live user holds the principal again.
    Deleted,
    /// The user's principal was renamed (this is the old one), and no live user holds it
    /// again.
    Renamed,
}

impl Blocked {
    /// What happened, after the principal's name: `is deactivated in the directory`.
    pub fn reason(self) -> &'static str {
        match self {
            Blocked::Deactivated => "is deactivated in the directory",
            Blocked::Deleted => "was deleted from the directory",
            Blocked::Renamed => "was renamed in the directory",
        }
    }

    /// What the caller is told about `principal`.
    pub fn told(self, principal: &str) -> String {
        format!("{principal} {}", self.reason())
    }

    /// What an agent acting for `person` is told.
    pub fn told_agent(self, agent: &str, person: &str) -> String {
        format!("{agent} acts for {person}, who {}", self.reason())
    }
}

/// A user as the directory holds them, for the effects of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub id: String,
    pub principal: String,
    pub active: bool,
}

/// The provisioned directory in memory.
#[derive(Debug, Default)]
pub struct Directory {
    state: RwLock<State>,
    /// Lowercase principals whose leaving is being written, since when, and by how many
    /// writes under way: filing and approving look here after they commit, so what races the
    /// change is undone.
    leaving: Mutex<HashMap<String, (Instant, u32)>>,
    /// Leavers heard of (one by one, or by a full reload) whose sweep is still owed (it
    /// failed, or is under way): principal, and since when.
    owed_sweeps: Mutex<Vec<(String, Timestamp)>>,
}

fn key(text: &str) -> String {
    text.to_ascii_lowercase()
}

impl State {
    fn remove_user(&mut self, id: &str) -> Option<User> {
        let user = self.users.remove(id)?;
        if self.by_principal.get(&user.principal).is_some_and(|i| i == id) {
            self.by_principal.remove(&user.principal);
        }
        let k = key(&user.principal);
        if self.by_principal_key.get(&k).is_some_and(|i| i == id) {
            self.by_principal_key.remove(&k);
        }
        Some(user)
    }

    fn put_user(&mut self, user: &ScimUser) {
        let old = self.remove_user(&user.id);
        let k = key(&user.principal);
        self.departed.remove(&k);
        // Renamed (not in case alone): the old principal leaves, as a deleted one does.
        if let Some(old) = old {
            let old_key = key(&old.principal);
            if old_key != k && !self.by_principal_key.contains_key(&old_key) {
                self.departed.insert(old_key, Blocked::Renamed);
            }
        }
        self.by_principal.insert(user.principal.clone(), user.id.clone());
        self.by_principal_key.insert(k, user.id.clone());
        self.users.insert(
            user.id.clone(),
            User {
                principal: user.principal.clone(),
                active: user.active,
                manager_id: user.manager_id.clone(),
            },
        );
    }

    fn delete_user(&mut self, id: &str) -> Option<User> {
        let user = self.remove_user(id)?;
        for group in self.groups_of.remove(id).unwrap_or_default() {
            if let Some(g) = self.groups.get_mut(&group) {
                g.members.remove(id);
            }
        }
        let k = key(&user.principal);
        if !self.by_principal_key.contains_key(&k) {
            self.departed.insert(k, Blocked::Deleted);
        }
        Some(user)
    }

    fn join(&mut self, group: &str, user: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.members.insert(user.to_string());
            self.groups_of
                .entry(user.to_string())
                .or_default()
                .insert(group.to_string());
        }
    }

    fn leave(&mut self, group: &str, user: &str) {
        if let Some(g) = self.groups.get_mut(group) {
            g.members.remove(user);
        }
        if let Some(of) = self.groups_of.get_mut(user) {
            of.remove(group);
            if of.is_empty() {
                self.groups_of.remove(user);
            }
        }
    }

    fn put_group(&mut self, group: &ScimGroup, members: &MemberChange) {
        let current = self.groups.entry(group.id.clone()).or_default();
        let old_name = std::mem::replace(&mut current.name, group.display_name.clone());
        if !old_name.is_empty() && key(&old_name) != key(&group.display_name) {
            self.group_by_key.remove(&key(&old_name));
        }
        self.group_by_key.insert(key(&group.display_name), group.id.clone());
        match members {
            MemberChange::Keep => {}
            MemberChange::Set(list) => {
                let wanted: HashSet<&String> = list.iter().collect();
                let gone: Vec<String> = self
                    .groups
                    .get(&group.id)
                    .map(|g| g.members.iter().filter(|m| !wanted.contains(m)).cloned().collect())
                    .unwrap_or_default();
                for user in gone {
                    self.leave(&group.id, &user);
                }
                for user in list {
                    self.join(&group.id, user);
                }
            }
            MemberChange::Edit { add, remove } => {
                for user in remove {
                    self.leave(&group.id, user);
                }
                for user in add {
                    self.join(&group.id, user);
                }
            }
        }
    }

    fn delete_group(&mut self, id: &str) {
        let Some(group) = self.groups.remove(id) else {
            return;
        };
        if self.group_by_key.get(&key(&group.name)).is_some_and(|g| g == id) {
            self.group_by_key.remove(&key(&group.name));
        }
        for user in group.members {
            if let Some(of) = self.groups_of.get_mut(&user) {
                of.remove(id);
                if of.is_empty() {
                    self.groups_of.remove(&user);
                }
            }
        }
    }

    /// The lowercase principals blocked: deactivated users' and departed ones.
    fn blocked_keys(&self) -> HashSet<String> {
        self.users
            .values()
            .filter(|u| !u.active)
            .map(|u| key(&u.principal))
            .chain(self.departed.keys().cloned())
            .collect()
    }

    fn active_user_of(&self, principal: &str) -> Option<(&String, &User)> {
        let id = self.by_principal.get(principal)?;
        let user = self.users.get(id)?;
        user.active.then_some((id, user))
    }
}

impl Directory {
    /// Everything provisioned, replacing what was held (at start, and when a replica catches
    /// up on a gap). Returns the principals blocked now that were not before, each with the
    /// moment it was deactivated (`None`: deleted, the moment not kept): a reload that
    /// replaces per-user notices must still end what raced each of them.
    pub fn load(&self, snapshot: &ScimSnapshot) -> Vec<(String, Option<Timestamp>)> {
        let mut state = State::default();
        for user in &snapshot.users {
            state.put_user(user);
        }
        for principal in &snapshot.departed {
            let k = key(principal);
            if !state.by_principal_key.contains_key(&k) {
                state.departed.insert(k, Blocked::Deleted);
            }
        }
        for group in &snapshot.groups {
            state.put_group(group, &MemberChange::Set(group.members.clone()));
        }
        let mut held = self.state.write();
        let before = held.blocked_keys();
        let mut newly: Vec<(String, Option<Timestamp>)> = snapshot
            .users
            .iter()
            .filter(|u| !u.active && !before.contains(&key(&u.principal)))
            .map(|u| (u.principal.clone(), Some(u.modified_at)))
            .collect();
        newly.extend(
            state
                .departed
                .keys()
                .filter(|k| !before.contains(*k))
                .map(|k| (k.clone(), None)),
        );
        *held = state;
        newly
    }

    /// A user as written (created, replaced, patched, renamed).
    pub fn put_user(&self, user: &ScimUser) {
        self.state.write().put_user(user);
    }

    /// A user deleted: their memberships end, their principal stays blocked until a live user
    /// holds it again. Returns the principal they had, if they were known.
    pub fn delete_user(&self, id: &str) -> Option<String> {
        self.state.write().delete_user(id).map(|u| u.principal)
    }

    /// A group as written, its members changed as `members` says.
    pub fn put_group(&self, group: &ScimGroup, members: &MemberChange) {
        self.state.write().put_group(group, members);
    }

    pub fn delete_group(&self, id: &str) {
        self.state.write().delete_group(id);
    }

    /// Why `principal` may not authenticate, if they may not: compared case-insensitively.
    pub fn blocked(&self, principal: &str) -> Option<Blocked> {
        let state = self.state.read();
        let k = key(principal);
        match state.by_principal_key.get(&k).and_then(|id| state.users.get(id)) {
            Some(user) if !user.active => Some(Blocked::Deactivated),
            Some(_) => None,
            None => state.departed.get(&k).copied(),
        }
    }

    /// The groups of an active user `principal`, by name, sorted.
    pub fn groups_of(&self, principal: &str) -> Vec<String> {
        let state = self.state.read();
        let Some((id, _)) = state.active_user_of(principal) else {
            return Vec::new();
        };
        let mut names: Vec<String> = state
            .groups_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|g| state.groups.get(g).map(|g| g.name.clone()))
            .collect();
        names.sort();
        names
    }

    /// The principals of `group`'s active members (the group named exactly), sorted.
    pub fn members(&self, group: &str) -> Vec<String> {
        let state = self.state.read();
        let Some(g) = state
            .group_by_key
            .get(&key(group))
            .and_then(|id| state.groups.get(id))
            .filter(|g| g.name == group)
        else {
            return Vec::new();
        };
        let mut members: Vec<String> = g
            .members
            .iter()
            .filter_map(|id| state.users.get(id))
            .filter(|u| u.active)
            .map(|u| u.principal.clone())
            .collect();
        members.sort();
        members
    }

    /// The principals of `group`'s members by the group's SCIM id, active or not.
    pub fn members_by_id(&self, group_id: &str) -> Vec<UserView> {
        let state = self.state.read();
        state
            .groups
            .get(group_id)
            .map(|g| {
                g.members
                    .iter()
                    .filter_map(|id| {
                        state.users.get(id).map(|u| UserView {
                            id: id.clone(),
                            principal: u.principal.clone(),
                            active: u.active,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The SCIM ids of group `group_id`'s members (active or not).
    pub fn member_ids(&self, group_id: &str) -> Vec<String> {
        self.state
            .read()
            .groups
            .get(group_id)
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The group names of user `id` (active or not), sorted.
    pub fn group_names_of_id(&self, id: &str) -> Vec<String> {
        let state = self.state.read();
        let mut names: Vec<String> = state
            .groups_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|g| state.groups.get(g).map(|g| g.name.clone()))
            .collect();
        names.sort();
        names
    }

    /// A live user by SCIM id.
    pub fn user(&self, id: &str) -> Option<UserView> {
        self.state.read().users.get(id).map(|u| UserView {
            id: id.to_string(),
            principal: u.principal.clone(),
            active: u.active,
        })
    }

    /// The principal of the manager of active user `principal`, when that manager is an
    /// active user too.
    pub fn manager(&self, principal: &str) -> Option<String> {
        let state = self.state.read();
        let (_, user) = state.active_user_of(principal)?;
        let manager = state.users.get(user.manager_id.as_deref()?)?;
        manager.active.then(|| manager.principal.clone())
    }

    /// The SCIM id of the live user holding `principal` (case-insensitively), if any.
    pub fn holder_of(&self, principal: &str) -> Option<String> {
        self.state.read().by_principal_key.get(&key(principal)).cloned()
    }

    /// The name of group `id`, if it exists.
    pub fn group_name(&self, id: &str) -> Option<String> {
        self.state.read().groups.get(id).map(|g| g.name.clone())
    }

    /// How many live users and groups are held.
    pub fn size(&self) -> (usize, usize) {
        let state = self.state.read();
        (state.users.len(), state.groups.len())
    }

    /// Owe `principal` a sweep (since `since`), until `take_owed_sweeps` hands it out.
    pub fn owe_sweep(&self, principal: String, since: Timestamp) {
        let mut owed = self.owed_sweeps.lock();
        if !owed.iter().any(|(p, s)| *p == principal && *s == since) {
            owed.push((principal, since));
        }
    }

    /// The sweeps owed, handed out (a failed one is owed again by the caller).
    pub fn take_owed_sweeps(&self) -> Vec<(String, Timestamp)> {
        std::mem::take(&mut *self.owed_sweeps.lock())
    }

    /// `principal`'s access is being ended by a change not yet written.
    pub fn mark_leaving(&self, principal: &str) {
        let mut leaving = self.leaving.lock();
        // Marks of writes that never committed lapse; forget them now and then.
        if leaving.len() >= 1024 {
            leaving.retain(|_, (since, _)| since.elapsed() < LEAVING_FOR);
        }
        let mark = leaving.entry(key(principal)).or_insert((Instant::now(), 0));
        *mark = (Instant::now(), mark.1.saturating_add(1));
    }

    /// A write that would have ended `principal`'s access failed (or will be computed again):
    /// its mark goes, unless another write under way marked them too.
    pub fn unmark_leaving(&self, principal: &str) {
        let mut leaving = self.leaving.lock();
        let k = key(principal);
        if let Some((_, writes)) = leaving.get_mut(&k) {
            *writes = writes.saturating_sub(1);
            if *writes == 0 {
                leaving.remove(&k);
            }
        }
    }

    /// The change that ended `principal`'s access is written: the directory says from now
    /// on.
    pub fn leaving_done(&self, principal: &str) {
        self.leaving.lock().remove(&key(principal));
    }

    /// Is `principal` blocked, or being made so by a change under way? What filing and
    /// approving ask after they commit.
    pub fn blocked_or_leaving(&self, principal: &str) -> Option<Blocked> {
        if let Some(b) = self.blocked(principal) {
            return Some(b);
        }
        let mut leaving = self.leaving.lock();
        let k = key(principal);
        match leaving.get(&k) {
            Some((since, _)) if since.elapsed() < LEAVING_FOR => Some(Blocked::Deactivated),
            Some(_) => {
                leaving.remove(&k);
                None
            }
            None => None,
        }
    }
}

impl jitgate_policy::ProvisionedDirectory for Directory {
    fn manager_of(&self, principal: &str) -> Option<String> {
        self.manager(principal)
    }

    fn members_of(&self, group: &str) -> Vec<String> {
        self.members(group)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn user(id: &str, principal: &str, active: bool, manager: Option<&str>) -> ScimUser {
        ScimUser {
            id: id.into(),
            user_name: principal.into(),
            principal: principal.into(),
            external_id: None,
            display_name: None,
            active,
            manager_id: manager.map(str::to_string),
            doc: serde_json::json!({}),
            version: 1,
            created_at: crate::clock::now(),
            modified_at: crate::clock::now(),
        }
    }

    fn group(id: &str, name: &str, members: &[&str]) -> ScimGroup {
        ScimGroup {
            id: id.into(),
            display_name: name.into(),
            external_id: None,
            doc: serde_json::json!({}),
            members: members.iter().map(|m| m.to_string()).collect(),
            version: 1,
            created_at: crate::clock::now(),
            modified_at: crate::clock::now(),
        }
    }

    #[test]
    fn groups_members_managers_and_blocking_follow_each_change() {
        let d = Directory::default();
        d.load(&ScimSnapshot {
            users: vec![
                user("u1", "alice", true, Some("u2")),
                user("u2", "mia", true, None),
                user("u3", "bob", false, None),
            ],
            departed: vec!["Gone".into(), "mia".into()],
            groups: vec![group("g1", "sre", &["u1", "u3"]), group("g2", "dev", &["u1"])],
        });
        assert_eq!(d.groups_of("alice"), ["dev", "sre"]);
        // Inactive users hold no groups, and count as no member.
        assert!(d.groups_of("bob").is_empty());
        assert_eq!(d.members("sre"), ["alice"]);
        assert!(d.members("SRE").is_empty(), "group names are exact");
        assert_eq!(d.manager("alice").as_deref(), Some("mia"));
        assert_eq!(d.blocked("bob"), Some(Blocked::Deactivated));
        assert_eq!(d.blocked("BOB"), Some(Blocked::Deactivated));
        assert_eq!(d.blocked("gone"), Some(Blocked::Deleted));
        // A departed principal live again is not blocked.
        assert_eq!(d.blocked("mia"), None);
        assert_eq!(d.blocked("alice"), None);
        assert_eq!(d.blocked("stranger"), None);

        // The manager deactivated: no manager.
        d.put_user(&user("u2", "mia", false, None));
        assert_eq!(d.manager("alice"), None);
        // Members edited one by one.
        d.put_group(
            &group("g1", "sre", &[]),
            &MemberChange::Edit {
                add: vec!["u2".into()],
                remove: vec!["u1".into()],
            },
        );
        assert_eq!(d.groups_of("alice"), ["dev"]);
        assert!(d.members("sre").is_empty(), "mia is inactive, bob too");
        // Renamed group: members see the new name.
        d.put_group(&group("g2", "developers", &[]), &MemberChange::Keep);
        assert_eq!(d.groups_of("alice"), ["developers"]);
        assert!(d.members("dev").is_empty());
        // Renamed user: the old principal holds nothing and is blocked (until a live user
        // holds it again); the new one holds the groups. A rename in case alone blocks nothing.
        d.put_user(&user("u1", "alice2", true, None));
        assert!(d.groups_of("alice").is_empty());
        assert_eq!(d.blocked("alice"), Some(Blocked::Renamed));
        assert_eq!(d.blocked("alice2"), None);
        d.put_user(&user("u1", "Alice2", true, None));
        assert_eq!(d.blocked("alice2"), None);
        d.put_user(&user("u1", "alice2", true, None));
        assert_eq!(d.groups_of("alice2"), ["developers"]);
        // Deleted: blocked, memberships gone.
        assert_eq!(d.delete_user("u1").as_deref(), Some("alice2"));
        assert_eq!(d.blocked("alice2"), Some(Blocked::Deleted));
        assert!(d.members_by_id("g2").is_empty());
        d.delete_group("g2");
        assert_eq!(d.group_name("g2"), None);
        // A new user takes the departed name: live again.
        d.put_user(&user("u9", "alice2", true, None));
        assert_eq!(d.blocked("alice2"), None);
    }

    #[test]
    fn a_leaving_mark_blocks_until_the_directory_says_so_or_it_lapses() {
        let d = Directory::default();
        assert_eq!(d.blocked_or_leaving("alice"), None);
        d.mark_leaving("Alice");
        assert_eq!(d.blocked_or_leaving("alice"), Some(Blocked::Deactivated));
        d.leaving_done("alice");
        assert_eq!(d.blocked_or_leaving("alice"), None);
        // Two writes under way; one fails: still leaving until the other is done or fails.
        d.mark_leaving("bob");
        d.mark_leaving("Bob");
        d.unmark_leaving("bob");
        assert_eq!(d.blocked_or_leaving("bob"), Some(Blocked::Deactivated));
        d.unmark_leaving("BOB");
        assert_eq!(d.blocked_or_leaving("bob"), None);
        d.unmark_leaving("bob");
        assert_eq!(d.blocked_or_leaving("bob"), None);
    }

    #[test]
    fn ten_thousand_users_in_a_thousand_groups_change_one_at_a_time() {
        let d = Directory::default();
        let users: Vec<ScimUser> = (0..10_000)
            .map(|i| user(&format!("u{i}"), &format!("user{i}"), true, None))
            .collect();
        let groups: Vec<ScimGroup> = (0..1_000)
            .map(|g| {
                let members: Vec<String> = (0..100).map(|k| format!("u{}", (g * 10 + k) % 10_000)).collect();
                ScimGroup {
                    members,
                    ..group(&format!("g{g}"), &format!("group{g}"), &[])
                }
            })
            .collect();
        let started = Instant::now();
        d.load(&ScimSnapshot {
            users,
            departed: Vec::new(),
            groups,
        });
        let loaded = started.elapsed();
        let started = Instant::now();
        for i in 0..1_000 {
            d.put_group(
                &group(&format!("g{i}"), &format!("group{i}"), &[]),
                &MemberChange::Edit {
                    add: vec![format!("u{}", (i + 5_000) % 10_000)],
                    remove: vec![format!("u{}", i * 10)],
                },
            );
            d.put_user(&user(&format!("u{i}"), &format!("user{i}"), i % 2 == 0, None));
        }
        let changed = started.elapsed();
        assert_eq!(d.size(), (10_000, 1_000));
        // In groups 491..=500, out of group500 (i = 500 removed it), into group0.
        assert_eq!(d.groups_of("user5000").len(), 10);
        // Generous bounds for a debug build on a shared machine: a change costs what it
        // changes, not the directory's size.
        assert!(loaded < Duration::from_secs(10), "load took {loaded:?}");
        assert!(changed < Duration::from_secs(2), "2,000 changes took {changed:?}");
    }
}
