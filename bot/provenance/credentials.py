"""Content Credentials (C2PA): every picture the bot sends says it was made by a model.

A signed C2PA manifest is embedded in the image file itself: the ``c2pa.created`` action
for a picture drawn from words, ``c2pa.opened`` + ``c2pa.edited`` for one made from input
images, the IPTC ``trainedAlgorithmicMedia`` source type, the model as the action's
``softwareAgent``, and each input image as an ingredient (``parentOf`` for the one being
edited, ``componentOf`` for the others in a fusion) carrying its own title and SHA-256.
The prompt goes in only when the caller says the chat allows it: prompts can be private.

The signing key and certificate chain come from ``CHATBRUSH_C2PA_CERT`` and
``CHATBRUSH_C2PA_KEY``. Without them a small self-signed CA and an end-entity certificate
with the extensions C2PA validators check (digitalSignature key usage, the
emailProtection and C2PA claim-signing EKUs, not a CA) are made on first start and kept
in a directory beside the database. Validators will not trust that CA; it only proves
the file was not altered since the bot signed it.

Signing never costs the user their picture: any failure (unsupported format, library
error) logs one warning and the unsigned bytes go out. Problems an operator can fix (a
missing or damaged key file, a certificate that does not match the key or that the
library refuses) are found at construction and reported as a one-line
:class:`~bot.core.config.SettingsError`.

Claim and ingredient thumbnails are switched off: they would embed re-encoded copies of
the inputs in every picture sent (see ``bench/results/credentials.md`` for their cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

import c2pa
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from bot.core.config import Settings, SettingsError
from bot.kit.image_structure import PNG_SIGNATURE, MalformedImage, jpeg_segments

log = logging.getLogger(__name__)

TRAINED_ALGORITHMIC_MEDIA: Final = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
)
#: key of an ingredient's ``metadata`` holding the hex SHA-256 of the input image's bytes
INGREDIENT_SHA256_KEY: Final = "chatbrush.sha256"
#: the C2PA claim-signing extended key usage (c2pa-kp-claimSigning)
C2PA_CLAIM_SIGNING_EKU: Final = x509.ObjectIdentifier("1.3.6.1.4.1.62558.2.1")

CA_FILE: Final = "ca.pem"
CHAIN_FILE: Final = "signer.pem"
KEY_FILE: Final = "signer.key"
#: a generated certificate this close to expiry is replaced at start
_RENEW_BEFORE: Final = datetime.timedelta(days=30)
_GENERATED_VALIDITY: Final = datetime.timedelta(days=5 * 365)

_EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
                      "image/gif": "gif"}


def _library_settings() -> dict[str, Any]:
    """c2pa settings for signing and reading: no thumbnails, never the network."""
    return {
        "builder": {
            "claim_generator_info": {"name": "Chatbrush", "version": _chatbrush_version()},
            "thumbnail": {"enabled": False},
        },
        "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False},
        "core": {"allowed_network_hosts": []},
    }


@cache
def _chatbrush_version() -> str:
    try:
        return version("chatbrush")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0"


@cache
def _supported_mime_types() -> frozenset[str]:
    return frozenset(c2pa.Builder.get_supported_mime_types())


@dataclass(frozen=True, slots=True)
class Ingredient:
    """An input image of a turn, as it was sent to the model."""

    data: bytes
    mime_type: str
    #: shown by Content Credentials viewers; defaults to ``input-<n>.<ext>``
    title: str | None = None
    #: the hex SHA-256 of ``data``, when the caller knows it already (the store does)
    known_sha256: str | None = None

    @property
    def sha256(self) -> str:
        return self.known_sha256 or hashlib.sha256(self.data).hexdigest()

    @property
    def may_carry_credentials(self) -> bool:
        """False when the file plainly holds no C2PA manifest: a PNG without a ``caBX``
        chunk, a JPEG without an APP11 segment (where JUMBF lives). Anything else —
        another format, a file that does not walk cleanly — might."""
        mime = self.mime_type.lower()
        try:
            if mime == "image/png":
                return _png_has_chunk(self.data, b"caBX")
            if mime == "image/jpeg":
                return any(s.marker == 0xEB for s in jpeg_segments(self.data))
        except MalformedImage:
            return True
        return True


def _png_has_chunk(data: bytes, ctype: bytes) -> bool:
    """Whether a chunk of type ``ctype`` comes before IEND (headers only: no CRCs)."""
    if not data.startswith(PNG_SIGNATURE):
        raise MalformedImage("png: no signature")
    i = len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        kind = data[i + 4 : i + 8]
        if kind == ctype:
            return True
        if kind == b"IEND":
            return False
        i += 12 + int.from_bytes(data[i : i + 4], "big")
    raise MalformedImage("png: no IEND")


@dataclass(frozen=True, slots=True)
class _Identity:
    """A loaded signing key and its chain, in the forms the c2pa library takes."""

    chain_pem: bytes
    key_pem: bytes  # unencrypted PKCS#8, whatever the file's own PEM flavour was
    algorithm: c2pa.C2paSigningAlg
    subject: str
    not_after: datetime.datetime


class ContentCredentials:
    """Signs pictures with one key; create once at start-up and share.

    ``directory`` holds the self-signed pair when no ``cert_path``/``key_path`` is given
    (:meth:`from_settings` puts it beside the database). Construction reads or creates
    the key and signs a tiny probe image, so a key the library refuses stops the bot at
    start with a :class:`SettingsError` instead of leaving every picture unsigned.
    """

    def __init__(
        self, directory: Path, *, cert_path: Path | None = None, key_path: Path | None = None
    ) -> None:
        if (cert_path is None) != (key_path is None):
            missing = "CHATBRUSH_C2PA_KEY" if key_path is None else "CHATBRUSH_C2PA_CERT"
            raise SettingsError(
                f"{missing} is not set: CHATBRUSH_C2PA_CERT and CHATBRUSH_C2PA_KEY go together"
            )
        if cert_path is not None and key_path is not None:
            self._identity = _load_operator_identity(cert_path, key_path)
            self.self_signed = False
        else:
            self._identity = _load_or_create_generated(directory)
            self.self_signed = True
        self.directory = directory
        self._per_thread = threading.local()
        self._probe()
        log.info(
            "Content Credentials: signing as %s (%s)",
            self._identity.subject,
            f"self-signed, not trusted by validators; kept in {directory}"
            if self.self_signed
            else f"certificate {cert_path}",
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, directory: Path | None = None
    ) -> ContentCredentials | None:
        """The signer the settings ask for, or None when ``CHATBRUSH_C2PA`` is off.

        The self-signed pair lives in ``<database name>-c2pa/`` beside ``CHATBRUSH_DB``
        unless ``directory`` says otherwise.
        """
        if not settings.chatbrush_c2pa:
            return None
        if directory is None:
            db = Path(settings.chatbrush_db).expanduser()
            directory = db.parent / f"{db.stem}-c2pa"
        return cls(directory, cert_path=settings.chatbrush_c2pa_cert,
                   key_path=settings.chatbrush_c2pa_key)

    def __repr__(self) -> str:  # never shows the key
        return f"ContentCredentials(subject={self._identity.subject!r})"

    @property
    def certificate_chain_pem(self) -> bytes:
        """The chain embedded in every manifest, signing certificate first."""
        return self._identity.chain_pem

    def sign(
        self,
        image: bytes,
        mime_type: str,
        *,
        model: str,
        inputs: Sequence[Ingredient] = (),
        prompt: str | None = None,
        include_prompt: bool = False,
        title: str | None = None,
    ) -> bytes:
        """``image`` with a signed manifest embedded, or ``image`` itself if that fails.

        ``inputs`` are the images the model was given, the one being edited first (it
        becomes the ``parentOf`` ingredient; the rest are ``componentOf``). ``prompt`` is
        written only with ``include_prompt=True``: pass that when the chat allows it.
        Blocking (a few milliseconds for a 1024² PNG); use :meth:`sign_async` on the loop.
        """
        mime = mime_type.lower()
        if mime not in _supported_mime_types():
            log.warning(
                "Content Credentials: %s picture sent unsigned (not a format c2pa can sign)",
                mime_type,
            )
            return image
        try:
            return self._sign(image, mime, model=model, inputs=inputs,
                              prompt=prompt if include_prompt else None, title=title)
        except Exception as exc:  # never lose the picture over its credentials
            log.warning("Content Credentials: %s picture sent unsigned (%s)",
                        mime, _one_line(exc))
            return image

    async def sign_async(
        self,
        image: bytes,
        mime_type: str,
        *,
        model: str,
        inputs: Sequence[Ingredient] = (),
        prompt: str | None = None,
        include_prompt: bool = False,
        title: str | None = None,
    ) -> bytes:
        """:meth:`sign` in a worker thread, so the event loop keeps serving chats."""
        return await asyncio.to_thread(
            self.sign, image, mime_type, model=model, inputs=inputs, prompt=prompt,
            include_prompt=include_prompt, title=title,
        )

    def _sign(
        self,
        image: bytes,
        mime: str,
        *,
        model: str,
        inputs: Sequence[Ingredient],
        prompt: str | None,
        title: str | None,
    ) -> bytes:
        labels = [f"input-{n}" for n in range(1, len(inputs) + 1)]
        generated: dict[str, Any] = {
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": {"name": model},
        }
        if prompt:
            generated["description"] = prompt
        if inputs:
            generated["action"] = "c2pa.edited"
            generated["parameters"] = {"ingredientIds": labels}
            actions = [{"action": "c2pa.opened", "parameters": {"ingredientIds": labels[:1]}},
                       generated]
        else:
            actions = [{"action": "c2pa.created", **generated}]
        streamed: list[tuple[dict[str, Any], Ingredient]] = []
        described: list[dict[str, Any]] = []
        # Inputs that plainly carry no credentials are only described (the library would
        # parse each for a millisecond to find nothing); if one may carry some, every
        # readable input is streamed, which keeps them in order.
        lending = any(i.mime_type.lower() in _supported_mime_types()
                      and i.may_carry_credentials for i in inputs)
        for number, (label, ingredient) in enumerate(zip(labels, inputs, strict=True), start=1):
            definition = {
                "title": ingredient.title or f"input-{number}.{_extension(ingredient.mime_type)}",
                "format": ingredient.mime_type,
                "relationship": "parentOf" if number == 1 else "componentOf",
                "label": label,
                "metadata": {INGREDIENT_SHA256_KEY: ingredient.sha256},
            }
            # a readable input lends its own credentials, if any, to the chain of custody
            if ingredient.mime_type.lower() in _supported_mime_types() and lending:
                streamed.append((definition, ingredient))
            else:
                described.append(definition)
        manifest = {
            "title": title or f"chatbrush.{_extension(mime)}",
            "ingredients": described,
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": actions}}],
        }
        context, signer = self._native()
        with c2pa.Builder(manifest, context=context) as builder:
            for definition, ingredient in streamed:
                builder.add_ingredient(definition, ingredient.mime_type,
                                       io.BytesIO(ingredient.data))
            signed = io.BytesIO()
            builder.sign(signer, mime, io.BytesIO(image), signed)
        return signed.getvalue()

    def _native(self) -> tuple[c2pa.Context, c2pa.Signer]:
        """This thread's Context and Signer: made once per worker thread (a third of a
        millisecond each time otherwise), never shared between threads signing at once."""
        made: tuple[c2pa.Context, c2pa.Signer] | None = getattr(self._per_thread, "native",
                                                                  None)
        if made is None:
            identity = self._identity
            made = (c2pa.Context.from_dict(_library_settings()),
                    c2pa.Signer.from_info(c2pa.C2paSignerInfo(
                        identity.algorithm, identity.chain_pem, identity.key_pem, None)))
            self._per_thread.native = made
        return made

    def _probe(self) -> None:
        """Sign a 1x1 PNG the strict way, so a refused key fails now, not per picture."""
        pixel = io.BytesIO()
        Image.new("RGB", (1, 1)).save(pixel, "PNG")
        try:
            self._sign(pixel.getvalue(), "image/png", model="probe", inputs=(), prompt=None,
                       title=None)
        except c2pa.C2paError as exc:
            refused = f"the c2pa library refused this key and certificate ({_one_line(exc)})"
            if self.self_signed:
                raise SettingsError(_damaged(self.directory, refused, self.directory)) from None
            raise SettingsError(f"invalid setting CHATBRUSH_C2PA_CERT: {refused}") from None


def read_credentials(data: bytes, mime_type: str) -> dict[str, Any] | None:
    """The active manifest of ``data`` as a JSON-like dict, or None if it has none.

    The manifest's ``validation_state`` (``Valid``, ``Trusted`` or ``Invalid``) is added
    under that key. Unreadable or unsupported data gives None, never an exception.
    """
    try:
        with c2pa.Context.from_dict(_library_settings()) as context:
            reader = c2pa.Reader.try_create(mime_type, io.BytesIO(data), None, context)
            if reader is None:
                return None
            with reader:
                manifest = reader.get_active_manifest()
                if manifest is None:
                    return None
                result: dict[str, Any] = json.loads(json.dumps(manifest))  # plain types only
                result["validation_state"] = reader.get_validation_state()
                return result
    except Exception as exc:
        log.info("Content Credentials: cannot read %s data (%s)", mime_type, _one_line(exc))
        return None


# --- keys and certificates


def _load_operator_identity(cert_path: Path, key_path: Path) -> _Identity:
    cert_pem = _read(cert_path, "CHATBRUSH_C2PA_CERT")
    key_pem = _read(key_path, "CHATBRUSH_C2PA_KEY")
    return _parse_identity(
        cert_pem, key_pem,
        cert_error=lambda why: f"invalid setting CHATBRUSH_C2PA_CERT: {cert_path} {why}",
        key_error=lambda why: f"invalid setting CHATBRUSH_C2PA_KEY: {key_path} {why}",
    )


def _read(path: Path, variable: str) -> bytes:
    try:
        return path.expanduser().read_bytes()
    except OSError as exc:
        raise SettingsError(
            f"invalid setting {variable}: cannot read {path} ({exc.strerror or exc})"
        ) from None


def _parse_identity(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    cert_error: Callable[[str], str],
    key_error: Callable[[str], str],
) -> _Identity:
    """Check a PEM chain and key belong together; ``*_error(why)`` words the failure."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise SettingsError(cert_error("holds no PEM certificate")) from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise SettingsError(key_error("is encrypted; give an unencrypted PEM key")) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SettingsError(key_error("is not a PEM private key")) from None
    algorithm = _algorithm(key)
    if algorithm is None:
        raise SettingsError(
            key_error("is not a key type C2PA signs with (EC P-256/384/521, RSA, Ed25519)")
        )
    leaf = chain[0]
    if leaf.public_key() != key.public_key():
        raise SettingsError(cert_error("does not match the key (the signing certificate "
                                       "must come first in the file)"))
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _Identity(
        chain_pem=b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain),
        key_pem=pkcs8,
        algorithm=algorithm,
        subject=leaf.subject.rfc4514_string(),
        not_after=leaf.not_valid_after_utc,
    )


def _algorithm(key: Any) -> c2pa.C2paSigningAlg | None:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {
            "secp256r1": c2pa.C2paSigningAlg.ES256,
            "secp384r1": c2pa.C2paSigningAlg.ES384,
            "secp521r1": c2pa.C2paSigningAlg.ES512,
        }.get(key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey):
        return c2pa.C2paSigningAlg.PS256  # C2PA allows RSA only with PSS padding
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return c2pa.C2paSigningAlg.ED25519
    return None


def _load_or_create_generated(directory: Path) -> _Identity:
    """The self-signed pair in ``directory``, made (or renewed) there if needed."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(directory):
            chain_path, key_path = directory / CHAIN_FILE, directory / KEY_FILE
            if chain_path.exists() and key_path.exists():
                identity = _parse_identity(
                    chain_path.read_bytes(), key_path.read_bytes(),
                    cert_error=lambda why: _damaged(chain_path, why, directory),
                    key_error=lambda why: _damaged(key_path, why, directory),
                )
                now = datetime.datetime.now(datetime.UTC)
                if identity.not_after - now > _RENEW_BEFORE:
                    return identity
                log.info("Content Credentials: the self-signed certificate in %s expires %s; "
                         "making a new one", directory, identity.not_after.date())
            return _create_generated(directory)
    except OSError as exc:
        raise SettingsError(
            f"cannot keep the Content Credentials key in {directory} ({exc.strerror or exc}); "
            "set CHATBRUSH_C2PA_CERT and CHATBRUSH_C2PA_KEY or CHATBRUSH_C2PA=false"
        ) from None


def _damaged(path: Path, why: str, directory: Path) -> str:
    return (f"the Content Credentials file {path} {why}; delete {directory} to make a new "
            "self-signed pair")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Two processes starting at once must not write halves of two different pairs."""
    fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _create_generated(directory: Path) -> _Identity:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Chatbrush self-signed CA")
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        _certificate(_name("Chatbrush signer"), ca_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING_EKU]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    chain_pem = leaf.public_bytes(pem) + ca.public_bytes(pem)
    # the CA's key is not kept: nothing else is ever signed with it
    _write(directory / KEY_FILE, key_pem, mode=0o600)
    _write(directory / CHAIN_FILE, chain_pem, mode=0o644)
    _write(directory / CA_FILE, ca.public_bytes(pem), mode=0o644)
    log.info("Content Credentials: made a self-signed signing certificate in %s", directory)
    return _Identity(chain_pem=chain_pem, key_pem=key_pem, algorithm=c2pa.C2paSigningAlg.ES256,
                     subject=leaf.subject.rfc4514_string(),
                     not_after=leaf.not_valid_after_utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Chatbrush"),
    ])


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: Any, now: datetime.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # tolerate clock skew
        .not_valid_after(now + _GENERATED_VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=key_cert_sign, crl_sign=key_cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _write(path: Path, data: bytes, *, mode: int) -> None:
    """Write via a temporary file, created with its final permissions, then rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _extension(mime_type: str) -> str:
    return _EXTENSIONS.get(mime_type.lower(), mime_type.rpartition("/")[2] or "bin")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
