"""Gateway settings (glueberry_gateway.server.settings, docs/gateway.md "Settings"): loading the TOML
file, validation that names the key at fault, paths relative to the file, and the documentation
of every limit with its real default."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from glueberry.exceptions import InvalidConfig
from glueberry.p2p.keys import PeerID, generate_private_key
from glueberry_gateway.server.keyfile import write_key_file
from glueberry_gateway.server.settings import (
    Limits,
    Settings,
    TokenSettings,
    load_settings,
    settings_from_dict,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "gateway" / "gateway.example.toml"
GUIDE = REPO / "docs" / "gateway.md"
BACKEND = "12D3KooWRNrU5yXJE2ga7u7HzySqVV1ZPcTGeMZDcaJabLzLqC1d"
TCP = "/ip4/127.0.0.1/tcp/4001"


def _problems(raw: dict[str, object], base: Path = Path()) -> str:
    with pytest.raises(InvalidConfig) as exc:
        settings_from_dict(raw, base=base)
    return str(exc.value)


def _backend(**overrides: object) -> dict[str, object]:
    return {"name": "chat", "peer_id": BACKEND, "addrs": [TCP], **overrides}


class TestLoading:
    def test_an_empty_file_gives_the_defaults(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text("")
        settings = load_settings(path)
        assert settings.listen_host == "127.0.0.1"
        assert settings.listen_port == 8080
        assert settings.path == "/ws"
        assert settings.backends == ()
        assert settings.allowed_origins == ()
        assert settings.limits == Limits()
        assert settings.log_format == "json"
        assert settings.log_level == "INFO"
        assert settings.tokens.required is False
        assert settings.tokens.key is None

    def test_without_a_key_file_each_load_is_a_new_identity(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text("")
        assert load_settings(path).peer_id != load_settings(path).peer_id

    def test_the_example_file_loads(self) -> None:
        settings = load_settings(EXAMPLE)
        assert [b.name for b in settings.backends] == ["chat"]
        assert str(settings.backends[0].peer_id) == BACKEND
        assert settings.allowed_origins
        assert settings.limits == Limits()  # the example shows the defaults, commented out

    def test_a_full_file(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text(
            'listen = "[::1]:9443"\n'
            'path = "/glueberry"\n'
            'allowed_origins = ["https://app.example/", "https://other.example"]\n'
            'log_format = "text"\n'
            'log_level = "debug"\n'
            "[[backends]]\n"
            f'name = "chat"\npeer_id = "{BACKEND}"\naddrs = ["{TCP}", "/dns4/chat.internal/tcp/4001"]\n'
            "[tokens]\n"
            'required = true\nalgorithms = ["HS256"]\nsecret = "s3cret"\n'
            'issuer = "https://auth.example"\naudience = "gw"\n'
            "[limits]\nmax_sessions = 4\nidle_timeout = 60.5\n"
        )
        settings = load_settings(path)
        assert (settings.listen_host, settings.listen_port) == ("::1", 9443)
        assert settings.path == "/glueberry"
        assert settings.allowed_origins == ("https://app.example", "https://other.example")
        assert settings.log_format == "text"
        assert settings.log_level == "DEBUG"
        (backend,) = settings.backends
        assert str(backend.peer_id) == BACKEND
        assert [str(a) for a in backend.addrs] == [TCP, "/dns4/chat.internal/tcp/4001"]
        assert settings.backend("chat") is backend
        assert settings.backend(BACKEND) is backend
        assert settings.backend("/ip4/127.0.0.1/tcp/4001") is None  # never an address
        assert settings.tokens.required is True
        assert settings.tokens.algorithms == ("HS256",)
        assert settings.tokens.key == "s3cret"
        assert (settings.tokens.issuer, settings.tokens.audience) == ("https://auth.example", "gw")
        assert settings.limits.max_sessions == 4
        assert settings.limits.idle_timeout == 60.5
        assert settings.limits.max_streams == Limits().max_streams


class TestRelativePaths:
    """Paths in the file are relative to the file, not to the working directory."""

    def test_key_static_dir_and_token_key(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        conf = tmp_path / "conf"
        (conf / "static").mkdir(parents=True)
        key = generate_private_key()
        write_key_file(conf / "gateway.key", key)
        pem = (
            generate_private_key().public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        (conf / "issuer.pem").write_bytes(pem)
        path = conf / "gw.toml"
        path.write_text(
            'identity_key_file = "gateway.key"\nstatic_dir = "static"\n'
            '[tokens]\npublic_key_file = "issuer.pem"\n'
        )
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        settings = load_settings(Path("..") / "conf" / "gw.toml")
        assert settings.peer_id == PeerID.from_private_key(key)
        assert settings.identity_file is not None
        assert settings.identity_file.resolve() == (conf / "gateway.key").resolve()
        assert settings.static_dir is not None
        assert settings.static_dir.resolve() == (conf / "static").resolve()
        assert settings.tokens.key == pem

    def test_a_key_file_that_is_not_a_key_says_so(self, tmp_path: Path) -> None:
        (tmp_path / "gateway.key").write_text("not hex at all\n")
        path = tmp_path / "gw.toml"
        path.write_text('identity_key_file = "gateway.key"\n')
        with pytest.raises(InvalidConfig, match=r"identity_key_file: .* is not a hex-encoded Ed25519 key"):
            load_settings(path)

    def test_without_a_key_file_the_identity_is_made_at_start(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text('listen = "127.0.0.1:9000"\n')
        assert load_settings(path).identity_file is None

    def test_a_missing_relative_file_is_reported_with_its_resolved_path(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text('identity_key_file = "missing.key"\n')
        with pytest.raises(InvalidConfig) as exc:
            load_settings(path)
        assert "identity_key_file" in str(exc.value)
        assert str(tmp_path / "missing.key") in str(exc.value)


# (raw settings, the key the message must name)
_NAMED: list[tuple[dict[str, object], str]] = [
    ({"listen": "8080"}, "listen"),
    ({"listen": 8080}, "listen"),
    ({"listen": "127.0.0.1:99999"}, "listen"),
    ({"path": "ws"}, "path"),
    ({"allowed_origins": "https://a.example"}, "allowed_origins"),
    ({"allowed_origins": ["app.example"]}, "allowed_origins"),
    ({"log_format": "xml"}, "log_format"),
    ({"static_dir": "no-such-dir"}, "static_dir"),
    ({"identity_key_file": "no-such.key"}, "identity_key_file"),
    ({"backends": [_backend(peer_id="not-a-peer-id")]}, "backends[0]"),
    ({"backends": [{"name": "chat", "peer_id": BACKEND}]}, "backends[0]: missing addrs"),
    ({"backends": [_backend(addrs=["garbage"])]}, "backends[0]"),
    ({"backends": [_backend(addrs=[])]}, "backends.chat"),
    ({"backends": [_backend(addrs=["/ip4/127.0.0.1/udp/4001"])]}, "backends.chat"),
    ({"backends": [_backend(), _backend()]}, "backends: names must be unique"),
    ({"backends": [_backend(extra=1)]}, "backends[0]"),
    ({"tokens": {"required": True}}, "tokens"),
    ({"tokens": {"public_key_file": "no-such.pem"}}, "tokens.public_key_file"),
    ({"limits": {"max_sessions": "3"}}, "limits.max_sessions"),
    ({"limits": {"max_sessions": True}}, "limits.max_sessions"),
    ({"limits": {"drain_timeout": 0}}, "limits.drain_timeout"),
    ({"limits": {"ping_interval": -1.0}}, "limits.ping_interval"),
]


class TestValidation:
    """Every problem is an InvalidConfig whose message names the key at fault."""

    @pytest.mark.parametrize(("raw", "key"), _NAMED, ids=[key for _, key in _NAMED])
    def test_the_message_names_the_key(self, raw: dict[str, object], key: str, tmp_path: Path) -> None:
        assert key in _problems(raw, tmp_path)

    @pytest.mark.parametrize(
        ("raw", "key"),
        [
            ({"colour": "blue"}, "colour"),
            ({"tokens": {"secert": "x"}}, "secert"),
            ({"limits": {"max_sessoins": 3}}, "limits.max_sessoins"),
            ({"backends": [_backend(addr=TCP)]}, "backends[0]"),
        ],
    )
    def test_unknown_keys_are_refused(self, raw: dict[str, object], key: str) -> None:
        message = _problems(raw)
        assert key in message
        assert "unknown" in message or "only" in message

    def test_every_problem_of_the_file_is_listed_at_once(self) -> None:
        message = _problems(
            {"colour": "blue", "listen": "x", "limits": {"max_sessoins": 1, "max_streams": "2"}}
        )
        for key in ("colour", "listen", "limits.max_sessoins", "limits.max_streams"):
            assert key in message
        assert message.count("\n  - ") == 4

    def test_invalid_toml_names_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "gw.toml"
        path.write_text("listen = \n")
        with pytest.raises(InvalidConfig) as exc:
            load_settings(path)
        assert str(path) in str(exc.value)
        assert "TOML" in str(exc.value)

    def test_a_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(InvalidConfig) as exc:
            load_settings(tmp_path / "absent.toml")
        assert "absent.toml" in str(exc.value)

    def test_validate_checks_a_settings_object_built_in_code(self) -> None:
        settings = Settings(listen_port=0, path="ws")
        with pytest.raises(InvalidConfig) as exc:
            settings.validate()
        assert "listen" in str(exc.value)
        assert "path" in str(exc.value)

    def test_a_token_key_that_cannot_verify_its_algorithms(self, tmp_path: Path) -> None:
        (tmp_path / "issuer.pem").write_bytes(b"-----BEGIN PUBLIC KEY-----\n")
        assert "tokens.public_key_file: not a PEM public key" in _problems(
            {"tokens": {"public_key_file": "issuer.pem"}}, tmp_path
        )
        assert "tokens.secret: a secret only works with HS256" in _problems(
            {"tokens": {"secret": "s3cret", "algorithms": ["HS256", "EdDSA"]}}
        )

    def test_validate_checks_the_token_key_of_a_settings_object_built_in_code(self) -> None:
        settings = Settings(tokens=TokenSettings(algorithms=("EdDSA",), key="s3cret"))
        with pytest.raises(InvalidConfig, match=r"tokens\.secret"):
            settings.validate()

    def test_a_star_origin_is_accepted(self) -> None:
        assert settings_from_dict({"allowed_origins": ["*"]}).allowed_origins == ("*",)


class TestMalformedTables:
    """Wrong shapes are reported with every other problem, never as a traceback."""

    def test_tokens_that_is_not_a_table(self) -> None:
        assert "tokens" in _problems({"tokens": True})

    def test_limits_that_is_not_a_table(self) -> None:
        assert "limits" in _problems({"limits": 3})

    def test_unknown_log_level(self) -> None:
        assert "log_level" in _problems({"log_level": "LOUD"})

    def test_unknown_token_algorithm(self) -> None:
        assert "tokens.algorithms" in _problems({"tokens": {"algorithms": ["none"], "secret": "s"}})

    def test_parse_and_validation_problems_together(self) -> None:
        message = _problems({"colour": "blue", "limits": {"max_sessions": 0}})
        assert "colour" in message
        assert "limits.max_sessions" in message


# The documentation.


def _default_cell(cell: str) -> float:
    """The number at the start of a table cell: `1048640` (1 MiB + 64), `10,000`, `4 MiB`…"""
    match = re.match(r"`?([\d_,.]+)`?", cell.strip())
    assert match, f"no number at the start of {cell!r}"
    return float(match.group(1).replace(",", "").replace("_", ""))


class TestDocumentation:
    """docs/gateway.md has a row for every Limits field, with the default the code has; the
    example configuration shows every limit with its default."""

    def test_every_limit_is_documented_with_its_default(self) -> None:
        guide = GUIDE.read_text()
        rows = {
            m.group(1): m.group(2)
            for m in re.finditer(r"^\| `([a-z_]+)` \| ([^|]+) \|", guide, flags=re.MULTILINE)
        }
        defaults = Limits()
        for f in fields(Limits):
            assert f.name in rows, f"limits.{f.name} is not in the limits table of docs/gateway.md"
            assert _default_cell(rows[f.name]) == getattr(defaults, f.name), f.name

    def test_the_guide_documents_no_limit_that_does_not_exist(self) -> None:
        guide = GUIDE.read_text()
        section = guide.split("### Limits", 1)[1].split("\n## ", 1)[0]
        documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))
        assert documented == {f.name for f in fields(Limits)}

    def test_the_example_shows_every_limit_with_its_default(self) -> None:
        example = EXAMPLE.read_text()
        defaults = Limits()
        for f in fields(Limits):
            match = re.search(rf"^# {f.name} = ([\d.]+)", example, flags=re.MULTILINE)
            assert match, f"limits.{f.name} is not in gateway.example.toml"
            assert float(match.group(1)) == getattr(defaults, f.name), f.name

    def test_every_metric_is_documented(self) -> None:
        from glueberry_gateway.server.metrics import Metrics

        guide = GUIDE.read_text()
        names = {family.name for family in Metrics().registry.collect()}
        assert names
        for name in names:  # counters are collected without their _total suffix
            assert f"`{name}" in guide, f"{name} is not in docs/gateway.md"

    def test_the_token_recipe_works(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The two Python blocks and the TOML block of "Tokens" make a token the gateway accepts."""
        import time

        from glueberry_gateway.server.tokens import TokenVerifier

        section = GUIDE.read_text().split("## 4. Tokens", 1)[1].split("\n## ", 1)[0]
        python_blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
        (toml_block,) = re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)
        assert len(python_blocks) == 2
        monkeypatch.chdir(tmp_path)
        namespace: dict[str, object] = {}
        for block in python_blocks:
            exec(block, namespace)
        (tmp_path / "gw.toml").write_text(toml_block)
        tokens = load_settings(tmp_path / "gw.toml").tokens
        assert tokens.key is not None
        browser = PeerID.from_private_key(generate_private_key())
        mint = namespace["gateway_token"]
        assert callable(mint)
        token = mint(str(browser), ["chat"])
        verifier = TokenVerifier(
            tokens.key, tokens.algorithms, issuer=tokens.issuer, audience=tokens.audience
        )
        claims = verifier.verify(token, browser, time.time())
        assert claims.subject == str(browser)
        assert claims.backends == frozenset({"chat"})
