//! Image references, checked against the distribution grammar
//! (`github.com/distribution/reference`) by hand:
//!
//! ```text
//! reference  := name [ ":" tag ] [ "@" digest ]
//! name       := [ domain "/" ] path-component ( "/" path-component )*
//! domain     := domain-component ( "." domain-component )* [ ":" [0-9]+ ]
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path-component   := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag        := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! digest     := algorithm ":" [0-9a-fA-F]{32,}
//! algorithm  := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
//! ```
//!
//! Not `oci_spec::distribution::Reference`: its grammar is one regex whose
//! tag, `[\w][\w.-]{0,127}`, is Unicode-aware, and compiling it took about
//! 17 MB at peak and kept about 7 MB live for the life of the process
//! (heaptrack, in the scheduler; the gateway loads the same policy), for a
//! check made once per job at load. Here `\w` is ASCII, as in Docker's Go
//! grammar, so a tag like `ünïcode` is refused, as Docker refuses it.

/// Docker's limit on the repository part (`library/` included).
const REPOSITORY_MAX: usize = 255;
const TAG_MAX: usize = 128;

const NOT_THE_GRAMMAR: &str = "it does not follow the grammar name[:tag][@digest] \
     (lower-case path, tag of up to 128 letters, digits, `_`, `.`, `-`)";

/// Checks `text` (already at most 512 bytes) against the grammar above and
/// Gatehouse's own rule: a digest, when there is one, is sha256 in 64
/// lower-case hex digits.
pub(crate) fn check(text: &str) -> Result<(), String> {
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    // A tag is the part after a `:` that follows the last `/`: no name
    // component after the domain may contain a `:`.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].split_once(':') {
        Some((_, tag)) => (&rest[..rest.len() - tag.len() - 1], Some(tag)),
        None => (rest, None),
    };
    if !is_name(name) || !tag.is_none_or(is_tag) {
        return Err(NOT_THE_GRAMMAR.into());
    }
    if repository_len(name) > REPOSITORY_MAX {
        return Err(format!(
            "the repository name is longer than {REPOSITORY_MAX} characters"
        ));
    }
    match digest {
        Some(digest) => check_digest(digest),
        None => Ok(()),
    }
}

fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(NOT_THE_GRAMMAR.into());
    };
    if !is_algorithm(algorithm) || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NOT_THE_GRAMMAR.into());
    }
    if algorithm != "sha256" {
        return Err("only sha256 digests are supported".into());
    }
    if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("a sha256 digest has 64 lower-case hex digits".into());
    }
    Ok(())
}

fn is_name(name: &str) -> bool {
    is_remote_name(name)
        || name
            .split_once('/')
            .is_some_and(|(domain, remote)| is_domain(domain) && is_remote_name(remote))
}

fn is_remote_name(name: &str) -> bool {
    name.split('/').all(is_path_component)
}

/// Lower-case letters and digits, in runs joined by `.`, `_`, `__` or any
/// number of `-`.
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    bytes
        .split(alnum)
        .filter(|separator| !separator.is_empty())
        .all(|separator| {
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-')
        })
}

fn is_domain(domain: &str) -> bool {
    let host = match domain.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return false,
        None => domain,
    };
    host.split('.').all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

fn is_tag(tag: &str) -> bool {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    tag.len() <= TAG_MAX
        && tag.as_bytes().first().is_some_and(word)
        && tag.bytes().all(|b| word(&b) || b == b'.' || b == b'-')
}

fn is_algorithm(algorithm: &str) -> bool {
    algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    })
}

/// The repository as Docker names it: without a domain (a first component
/// with a `.` or `:`, or `localhost`), and with `library/` in front of a
/// Docker Hub name of one component.
fn repository_len(name: &str) -> usize {
    let (domain, remainder) = match name.split_once('/') {
        Some((domain, remainder)) if domain.contains(['.', ':']) || domain == "localhost" => {
            (Some(domain), remainder)
        }
        _ => (None, name),
    };
    let docker_hub = matches!(domain, None | Some("docker.io" | "index.docker.io"));
    if docker_hub && !remainder.contains('/') {
        "library/".len() + remainder.len()
    } else {
        remainder.len()
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_docker_accepts_are_accepted() {
        let pinned = format!("registry.example.com/ops/report@sha256:{HEX}");
        let tagged_and_pinned = format!("busybox:1.36.1@sha256:{HEX}");
        let long_tag = format!("busybox:{}", "t".repeat(128));
        for text in [
            "busybox",
            "busybox:1.36.1",
            "library/busybox:latest",
            "docker.io/library/busybox:1",
            "gatehouse-test/busybox:latest",
            "localhost:5000",
            "localhost:5000/team/app:v2",
            "Registry.Example.COM:443/a/b:T_1.x-y",
            "my-registry/a.b/c__d/e---f/g_h:_",
            "127.0.0.1:5000/x",
            &pinned,
            &tagged_and_pinned,
            &long_tag,
        ] {
            assert_eq!(check(text), Ok(()), "{text}");
        }
    }

    #[test]
    fn references_outside_the_grammar_are_refused() {
        let long_tag = format!("busybox:{}", "t".repeat(129));
        let long_name = "a".repeat(248);
        for text in [
            "Not A Ref",
            "BUSYBOX",
            "busybox@sha256:abc",
            "busybox:",
            "busybox:.x",
            "busybox:ünïcode",
            "busybox:a:b",
            "a..b",
            "a___b",
            "a_-b",
            "-a",
            "a-",
            "a/",
            "/a",
            "a//b",
            "host:/a",
            "host:port/a",
            "-host.example.com/a",
            "busybox@",
            "busybox@sha256",
            "bad@name@sha256:x",
            &long_tag,
            &long_name,
        ] {
            assert!(check(text).is_err(), "{text}");
        }
    }

    #[test]
    fn only_lower_case_sha256_digests_are_accepted() {
        let upper = format!("busybox@sha256:{}", HEX.to_uppercase());
        let short = format!("busybox@sha256:{}", &HEX[..40]);
        let sha512 = format!("busybox@sha512:{HEX}{HEX}");
        assert!(check(&upper).unwrap_err().contains("lower-case"));
        assert!(check(&short).unwrap_err().contains("64 lower-case"));
        assert!(check(&sha512).unwrap_err().contains("only sha256"));
    }
}
