"""The PowerShell language: parsing, evaluation, operators, members, conversions, binding.

This layer knows nothing of ConfigMgr and of the commands a runspace offers: it evaluates
scripts against a `session.Session` (what a runspace gives it). `tests/emulator/test_layers.py`
checks that it imports nothing outside this package but `cmproxy.emulator.settings`.
"""
