"""Hypothesis strategies for specs full of awkward strings, shared by the unit fuzz test (files read
back by Java's own Properties.load, scripts checked by `sh -n`) and the lab test (units checked by
systemd on a real host)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Strings that mean something to one of the formats a value can land in.
NASTY = ["{{ lookup('pipe','id') }}", "{% raw %}", "{# c #}", "C:\\temp\\new", " lead", "trail\\", "\\", "#x",
         "!x", "=", ":", "a=b", "\\u0041", "\\uZZZZ", "%p", "%%", "%n", "$HOME", "${HOME}", "$$", '"', "'", "`id`",
         "$(id)", ";", " ; ", "&&", "|", "\\n", "\\t", "é", "\u00a0", "😀", "\u200b", "ExecStartPre=+/bin/id",
         "server.9=x", "\t", "\n", "\r", "\x00", "\u2028", "\x85", "\x1b[31m"]

awkward = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=24),
    st.lists(st.sampled_from(NASTY) | st.text(max_size=6), min_size=1, max_size=5).map("".join),
)
# Awkward but printable: what a config value may hold, so these reach the renderers.
_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp"))
printable = st.one_of(
    st.sampled_from([n for n in NASTY if n.isprintable()]),
    st.text(_PRINTABLE, max_size=24),
    st.lists(st.sampled_from([n for n in NASTY if n.isprintable()]) | st.text(_PRINTABLE, max_size=6),
             min_size=1, max_size=5).map("".join),
)

STRING_CONFIGS = ["sasl.kerberos.service.name", "ssl.truststore.location", "ssl.keystore.location",
                  "ssl.endpoint.identification.algorithm", "sasl.kerberos.kinit.cmd", "ssl.cipher.suites"]
# Free string keys (a key kafkaform manages, e.g. ssl.keyStore.location under zookeeper_tls, is always
# refused, and would only lower the share of specs that reach the renderers).
ZK_KEYS = ["maxClientCnxns", "ssl.ciphersuites", "minSessionTimeout", "4lw.commands.whitelist"]

valid_path = st.sampled_from(["/data/kafka", "/srv/kafka-1", "/mnt/disk1/k", "/var/lib/kafka/d", "/data/a+b@c"])


def mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid value nine times in ten: a spec has about fifteen free fields, so at four in five
    only one spec in ten or fewer passed every check and reached the renderers."""
    return st.integers(0, 9).flatmap(lambda n: hostile if n == 0 else valid)


@st.composite
def spec_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A lab-shaped spec (3 brokers, 3 ZooKeeper nodes) with awkward values in every free field."""
    config = draw(st.dictionaries(st.sampled_from(STRING_CONFIGS), mostly(printable, awkward), max_size=4))
    jvm_opts = draw(st.lists(mostly(st.builds(lambda a: "-Dkf.fuzz=" + a, printable), awkward), max_size=4))
    racks = draw(st.one_of(st.none(), mostly(st.sampled_from(["az1", "rack-a", "use1-az1"]), awkward)))
    zk_dir = draw(mostly(st.just("/var/lib/zookeeper"), st.one_of(valid_path, awkward)))
    data: dict[str, Any] = {
        "name": draw(mostly(st.sampled_from(["lab", "fuzz-1"]), awkward)),
        "kafka": {"version": "3.9.1", "artifact": {"maven": True}, "config": config, "jvm_opts": jvm_opts,
                  "install_dir": draw(mostly(st.just("/opt/kafka"), st.one_of(valid_path, awkward)))},
        "zookeeper": {
            "data_dir": zk_dir,
            "config": draw(st.dictionaries(st.sampled_from(ZK_KEYS), mostly(printable, awkward), max_size=2)),
            "nodes": [{"myid": i, "host": f"10.213.0.1{i}"} for i in (1, 2, 3)],
        },
        "brokers": [{"id": i, "host": f"10.213.0.1{i}",
                     "data_dirs": [draw(mostly(st.just("/var/lib/kafka/data"),
                                               st.one_of(valid_path, st.builds(lambda a: "/data/" + a, awkward))))]}
                    for i in (1, 2, 3)],
    }
    if racks is not None:
        for b in data["brokers"]:
            b["rack"] = racks
    return data
