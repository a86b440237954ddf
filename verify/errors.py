"""Exceptions raised by the offline verifier.

Every failure the verifier can detect is a :class:`VerificationError`, so a caller that only
needs "did it hold?" catches that one class. The subclasses say *which kind* of thing failed,
and every message says *what* failed and *where* (an index, a size, a line number, a field
name), so a person reading a verification report can find the offending item.

Programming errors on the producing side (formatting a value that is out of range, signing a
text that is not a valid note) raise :class:`ValueError` or :class:`TypeError` instead: those are
bugs in the caller, not evidence about the data.
"""

from __future__ import annotations

__all__ = [
    "CommitmentError",
    "MalformedError",
    "ProofError",
    "SignatureError",
    "VerificationError",
    "WrongKeyError",
]


class VerificationError(Exception):
    """Base class: the input does not verify. Never raised for caller bugs."""


class MalformedError(VerificationError):
    """The input cannot be parsed: it is not in the exact, canonical format required."""


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof does not verify (or has the wrong shape)."""


class SignatureError(VerificationError):
    """A signature by the trusted key is present but cryptographically invalid."""


class WrongKeyError(SignatureError):
    """No signature by the trusted key, or a key name, key ID or origin does not match it."""


class CommitmentError(VerificationError):
    """An opening (value and salt) does not match the commitment it claims to open."""
