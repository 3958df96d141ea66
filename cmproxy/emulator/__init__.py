"""The cmproxy site emulator: an emulated ConfigMgr site behind a real WinRM endpoint.

A separate wing: it imports nothing of the SDK (it emulates the product, which does not
share cmproxy's rules), and the SDK never imports it; only the CLI starts it.
"""
