"""Policy: labels and the access decision, pure functions without I/O.

``labels`` is the label algebra (levels 公开 < 内部 < 秘密 < 机密 < 绝密, caveats, join, the
one wire syntax); ``decide`` is the one access decision (clearance, caveats, role grants,
need-to-know; default deny). Owns no table. Guarantee: every component that decides access
calls ``decide.decide`` (or builds SQL from ``decide.ROLE_GRANTS``), never restates a rule.
"""
