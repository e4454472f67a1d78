"""Content Credentials: real images signed by the real c2pa library and read back with it."""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image, ImageChops

from bot.core.config import SettingsError, load_settings
from bot.provenance.credentials import (
    CA_FILE,
    CHAIN_FILE,
    INGREDIENT_SHA256_KEY,
    KEY_FILE,
    TRAINED_ALGORITHMIC_MEDIA,
    ContentCredentials,
    Ingredient,
    read_credentials,
)

MODEL = "gemini-2.5-flash-image"


def picture(fmt: str, seed: int = 0, side: int = 96) -> bytes:
    """A small noisy picture in ``fmt`` (each seed gives different bytes)."""
    im = Image.effect_noise((side, side), 30 + seed).convert("RGB")
    im.putpixel((0, 0), (seed % 256, 0, 0))
    out = io.BytesIO()
    im.save(out, fmt)
    return out.getvalue()


def read_back(data: bytes, mime_type: str, *, trusting: bytes | None = None) -> c2pa.Reader:
    """A c2pa.Reader over ``data``, offline, optionally trusting one root certificate."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False}}
    if trusting is not None:
        settings["trust"] = {"user_anchors": trusting.decode()}
    return c2pa.Reader(mime_type, io.BytesIO(data), context=c2pa.Context.from_dict(settings))


def actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    (assertion,) = [a for a in manifest["assertions"] if a["label"] == "c2pa.actions.v2"]
    return list(assertion["data"]["actions"])


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> ContentCredentials:
    return ContentCredentials(tmp_path_factory.mktemp("c2pa"))


# --- what a signed picture says


def test_a_picture_drawn_from_words_is_signed_as_created_by_the_model(
    credentials: ContentCredentials,
) -> None:
    original = picture("PNG")
    signed = credentials.sign(original, "image/png", model=MODEL, prompt="a red fox")
    with read_back(signed, "image/png") as reader:
        manifest = reader.get_active_manifest()
        state = reader.get_validation_state()
    assert state == "Valid"  # intact and well signed; "Trusted" needs a trusted root
    (created,) = actions(manifest)
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert created["softwareAgent"]["name"] == MODEL
    assert "description" not in created  # the prompt stays private by default
    assert not manifest.get("ingredients")
    assert manifest["claim_generator_info"][0]["name"] == "Chatbrush"
    assert manifest["title"] == "chatbrush.png"
    # the picture itself is untouched: same pixels, still a PNG
    before, after = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(signed))
    assert after.format == "PNG"
    assert ImageChops.difference(before.convert("RGB"), after.convert("RGB")).getbbox() is None


def test_an_edit_names_its_input_as_the_parent_ingredient(
    credentials: ContentCredentials,
) -> None:
    source = picture("JPEG", seed=1)
    signed = credentials.sign(
        picture("JPEG", seed=2), "image/jpeg", model=MODEL,
        inputs=[Ingredient(source, "image/jpeg", title="holiday.jpg")],
    )  # fmt: skip
    with read_back(signed, "image/jpeg") as reader:
        manifest = reader.get_active_manifest()
    opened, edited = actions(manifest)
    assert opened["action"] == "c2pa.opened"
    assert edited["action"] == "c2pa.edited"
    assert edited["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert edited["softwareAgent"]["name"] == MODEL
    (parent,) = manifest["ingredients"]
    assert parent["title"] == "holiday.jpg"
    assert parent["relationship"] == "parentOf"
    assert parent["format"] == "image/jpeg"
    assert parent["metadata"][INGREDIENT_SHA256_KEY] == hashlib.sha256(source).hexdigest()
    # both actions point at that ingredient assertion
    assert len(opened["parameters"]["ingredients"]) == 1
    assert opened["parameters"]["ingredients"] == edited["parameters"]["ingredients"]


def test_a_fusion_lists_every_input_the_first_as_parent(
    credentials: ContentCredentials,
) -> None:
    inputs = [
        Ingredient(picture("JPEG", seed=3), "image/jpeg", title="person.jpg"),
        Ingredient(picture("PNG", seed=4), "image/png", title="hat.png"),
        Ingredient(picture("JPEG", seed=5), "image/jpeg"),
    ]
    signed = credentials.sign(picture("PNG", seed=6), "image/png", model=MODEL, inputs=inputs)
    with read_back(signed, "image/png") as reader:
        manifest = reader.get_active_manifest()
    found = [
        (i["title"], i["relationship"], i["metadata"][INGREDIENT_SHA256_KEY])
        for i in manifest["ingredients"]
    ]
    assert found == [
        ("person.jpg", "parentOf", inputs[0].sha256),
        ("hat.png", "componentOf", inputs[1].sha256),
        ("input-3.jpg", "componentOf", inputs[2].sha256),
    ]
    assert len({sha for _, _, sha in found}) == 3
    edited = actions(manifest)[1]
    assert len(edited["parameters"]["ingredients"]) == 3


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_an_input_with_credentials_of_its_own_keeps_them_in_the_chain(
    credentials: ContentCredentials, fmt: str, mime: str
) -> None:
    earlier = credentials.sign(picture(fmt, seed=3), mime, model=MODEL)
    plain = picture(fmt, seed=4)
    assert Ingredient(earlier, mime).may_carry_credentials
    assert not Ingredient(plain, mime).may_carry_credentials
    signed = credentials.sign(picture("PNG", seed=5), "image/png", model=MODEL,
                              inputs=[Ingredient(earlier, mime), Ingredient(plain, mime)])
    with read_back(signed, "image/png") as reader:
        store = json.loads(reader.json())
    active = store["manifests"][store["active_manifest"]]
    parent, other = active["ingredients"]
    assert parent["relationship"] == "parentOf" and other["relationship"] == "componentOf"
    # the earlier picture's own manifest came along; the plain one is listed by its hash
    assert parent.get("active_manifest") in store["manifests"]
    assert "active_manifest" not in other
    assert other["metadata"][INGREDIENT_SHA256_KEY] == hashlib.sha256(plain).hexdigest()


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xd8\xff\xe0\x00", b""])
def test_an_input_that_does_not_walk_cleanly_is_left_to_the_library(data: bytes) -> None:
    for mime in ("image/png", "image/jpeg", "image/webp"):
        assert Ingredient(data, mime).may_carry_credentials


def test_a_known_hash_is_not_computed_again() -> None:
    assert Ingredient(b"pic", "image/png", known_sha256="ab" * 32).sha256 == "ab" * 32
    assert Ingredient(b"pic", "image/png").sha256 == hashlib.sha256(b"pic").hexdigest()


def test_an_input_the_library_cannot_parse_is_still_listed_with_its_hash(
    credentials: ContentCredentials,
) -> None:
    bmp = Ingredient(picture("BMP", seed=7), "image/bmp", title="scan.bmp")
    signed = credentials.sign(picture("PNG"), "image/png", model=MODEL, inputs=[bmp])
    manifest = read_credentials(signed, "image/png")
    assert manifest is not None
    (parent,) = manifest["ingredients"]
    assert (parent["title"], parent["format"]) == ("scan.bmp", "image/bmp")
    assert parent["metadata"][INGREDIENT_SHA256_KEY] == bmp.sha256


@pytest.mark.parametrize("include_prompt", [True, False])
def test_the_prompt_is_written_only_when_the_chat_allows_it(
    credentials: ContentCredentials, include_prompt: bool
) -> None:
    prompt = "put grandma's hat on the dog"
    signed = credentials.sign(
        picture("JPEG"), "image/jpeg", model=MODEL, prompt=prompt, include_prompt=include_prompt,
        inputs=[Ingredient(picture("JPEG", seed=8), "image/jpeg")],
    )  # fmt: skip
    manifest = read_credentials(signed, "image/jpeg")
    assert manifest is not None
    assert (actions(manifest)[1].get("description") == prompt) is include_prompt
    assert (prompt.encode() in signed) is include_prompt


def test_webp_pictures_are_signed_too(credentials: ContentCredentials) -> None:
    signed = credentials.sign(picture("WEBP"), "image/webp", model=MODEL)
    manifest = read_credentials(signed, "image/webp")
    assert manifest is not None and manifest["validation_state"] == "Valid"
    assert Image.open(io.BytesIO(signed)).format == "WEBP"


async def test_signing_from_the_event_loop(credentials: ContentCredentials) -> None:
    signed = await credentials.sign_async(picture("PNG"), "image/png", model=MODEL)
    manifest = read_credentials(signed, "image/png")
    assert manifest is not None and actions(manifest)[0]["action"] == "c2pa.created"


# --- failures never lose the picture


def test_a_signing_failure_sends_the_original_bytes_and_logs_once(
    credentials: ContentCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = picture("PNG")[:200]  # a truncated download
    with caplog.at_level(logging.WARNING, logger="bot.provenance.credentials"):
        result = credentials.sign(damaged, "image/png", model=MODEL, prompt="secret",
                                  include_prompt=True)  # fmt: skip
    assert result == damaged
    (record,) = caplog.records
    assert "sent unsigned" in record.getMessage()
    assert "secret" not in record.getMessage()


def test_a_format_the_library_cannot_sign_goes_out_unchanged(
    credentials: ContentCredentials, caplog: pytest.LogCaptureFixture
) -> None:
    bmp = picture("BMP")
    with caplog.at_level(logging.WARNING, logger="bot.provenance.credentials"):
        assert credentials.sign(bmp, "image/bmp", model=MODEL) == bmp
    (record,) = caplog.records
    assert "image/bmp" in record.getMessage() and "not a format" in record.getMessage()


@pytest.mark.parametrize("data", [picture("PNG"), b"", b"\x89PNG\r\n\x1a\n garbage"])
def test_reading_a_picture_without_credentials_gives_none(data: bytes) -> None:
    assert read_credentials(data, "image/png") is None


# --- the self-signed pair


def test_the_self_signed_pair_is_made_once_and_reused(tmp_path: Path) -> None:
    first = ContentCredentials(tmp_path / "keys")
    files = {name: (tmp_path / "keys" / name).read_bytes()
             for name in (CA_FILE, CHAIN_FILE, KEY_FILE)}  # fmt: skip
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / KEY_FILE).st_mode) == 0o600
    assert b"PRIVATE KEY" in files[KEY_FILE] and b"PRIVATE KEY" not in files[CHAIN_FILE]
    second = ContentCredentials(tmp_path / "keys")
    assert {n: (tmp_path / "keys" / n).read_bytes() for n in files} == files
    assert first.certificate_chain_pem == second.certificate_chain_pem
    serials = set()
    for signer in (first, second):
        manifest = read_credentials(signer.sign(picture("PNG"), "image/png", model=MODEL),
                                    "image/png")  # fmt: skip
        assert manifest is not None
        serials.add(manifest["signature_info"]["cert_serial_number"])
    assert len(serials) == 1


def test_the_self_signed_certificate_has_what_validators_require(tmp_path: Path) -> None:
    signer = ContentCredentials(tmp_path)
    leaf, ca = x509.load_pem_x509_certificates(signer.certificate_chain_pem)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in eku
    assert leaf.issuer == ca.subject and leaf.issuer != leaf.subject
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert (tmp_path / CA_FILE).read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    # untrusted by default, but a validator told to trust our CA accepts the whole chain
    signed = signer.sign(picture("PNG"), "image/png", model=MODEL)
    with read_back(signed, "image/png") as reader:
        assert reader.get_validation_state() == "Valid"
        failures = reader.get_validation_results()["activeManifest"]["failure"]
        assert [f["code"] for f in failures] == ["signingCredential.untrusted"]
    with read_back(signed, "image/png", trusting=(tmp_path / CA_FILE).read_bytes()) as reader:
        assert reader.get_validation_state() == "Trusted"


def test_a_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    ContentCredentials(tmp_path)
    (tmp_path / KEY_FILE).write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot base64\n")
    with pytest.raises(SettingsError) as caught:
        ContentCredentials(tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(tmp_path / KEY_FILE) in message and "not a PEM private key" in message
    assert f"delete {tmp_path}" in message


def test_a_self_signed_certificate_about_to_expire_is_replaced(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    expiring_chain, expiring_key = operator_pair(tmp_path, valid_days=10)
    (keys / CHAIN_FILE).write_bytes(expiring_chain.read_bytes())
    (keys / KEY_FILE).write_bytes(expiring_key.read_bytes())
    renewed = ContentCredentials(keys)
    leaf = x509.load_pem_x509_certificates(renewed.certificate_chain_pem)[0]
    assert leaf.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(
        days=365
    )
    assert (keys / CHAIN_FILE).read_bytes() == renewed.certificate_chain_pem


# --- the operator's own certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=signs_certificates, crl_sign=signs_certificates,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def operator_pair(
    directory: Path, *, with_eku: bool = True, valid_days: int = 90
) -> tuple[Path, Path]:
    """An organisation's own P-384 CA and signing certificate, as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, issuer: str, public_key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=valid_days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )  # fmt: skip

    ca_key, key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())
    ca = (
        cert("ACME root", "ACME root", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    leaf_builder = (
        cert("ACME newsroom", "ACME root", key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )  # fmt: skip
    if with_eku:
        leaf_builder = leaf_builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    leaf = leaf_builder.sign(ca_key, hashes.SHA384())
    pem = serialization.Encoding.PEM
    cert_path, key_path = directory / "acme-chain.pem", directory / "acme.key"
    cert_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(  # the older "EC PRIVATE KEY" PEM flavour
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ))  # fmt: skip
    return cert_path, key_path


def test_the_operators_certificate_signs_and_nothing_is_generated(tmp_path: Path) -> None:
    cert_path, key_path = operator_pair(tmp_path)
    signer = ContentCredentials(tmp_path / "unused", cert_path=cert_path, key_path=key_path)
    assert not signer.self_signed
    assert not (tmp_path / "unused").exists()
    manifest = read_credentials(signer.sign(picture("PNG"), "image/png", model=MODEL),
                                "image/png")  # fmt: skip
    assert manifest is not None
    assert manifest["signature_info"]["common_name"] == "ACME newsroom"
    assert manifest["signature_info"]["alg"] == "Es384"


def test_settings_choose_the_signer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "bot.db"
    assert ContentCredentials.from_settings(
        load_settings(chatbrush_db=str(database), chatbrush_c2pa=False)
    ) is None
    monkeypatch.setenv("CHATBRUSH_C2PA_CERT", "")  # a blank line in .env means unset
    monkeypatch.setenv("CHATBRUSH_C2PA_KEY", " ")
    default = ContentCredentials.from_settings(load_settings(chatbrush_db=str(database)))
    assert default is not None and default.self_signed
    assert (tmp_path / "bot-c2pa" / KEY_FILE).exists()  # beside the database
    cert_path, key_path = operator_pair(tmp_path)
    monkeypatch.setenv("CHATBRUSH_C2PA_CERT", str(cert_path))
    monkeypatch.setenv("CHATBRUSH_C2PA_KEY", str(key_path))
    own = ContentCredentials.from_settings(load_settings(chatbrush_db=str(database)))
    assert own is not None and not own.self_signed
    assert own.certificate_chain_pem == cert_path.read_bytes()


def _bad_operator_files(tmp_path: Path, case: str) -> tuple[Path | None, Path | None]:
    cert_path, key_path = operator_pair(tmp_path, with_eku=case != "no usage")
    if case == "missing key":
        key_path.unlink()
    elif case == "garbage key":
        key_path.write_text("hello")
    elif case == "encrypted key":
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        ))  # fmt: skip
    elif case == "not a certificate":
        cert_path.write_text("hello")
    elif case == "someone else's certificate":
        (tmp_path / "other").mkdir()
        cert_path, _ = operator_pair(tmp_path / "other")
    elif case == "cert without key":
        return cert_path, None
    return cert_path, key_path


@pytest.mark.parametrize(
    ("case", "variable", "words"),
    [
        ("missing key", "CHATBRUSH_C2PA_KEY", "cannot read"),
        ("garbage key", "CHATBRUSH_C2PA_KEY", "not a PEM private key"),
        ("encrypted key", "CHATBRUSH_C2PA_KEY", "encrypted"),
        ("not a certificate", "CHATBRUSH_C2PA_CERT", "no PEM certificate"),
        ("someone else's certificate", "CHATBRUSH_C2PA_CERT", "does not match the key"),
        ("cert without key", "CHATBRUSH_C2PA_KEY", "go together"),
        ("no usage", "CHATBRUSH_C2PA_CERT", "refused"),
    ],
)
def test_bad_key_or_certificate_files_are_one_clear_line(
    tmp_path: Path, case: str, variable: str, words: str
) -> None:
    cert_path, key_path = _bad_operator_files(tmp_path, case)
    with pytest.raises(SettingsError) as caught:
        ContentCredentials(tmp_path / "unused", cert_path=cert_path, key_path=key_path)
    message = str(caught.value)
    assert variable in message and words in message
    assert "\n" not in message and "PRIVATE KEY" not in message
