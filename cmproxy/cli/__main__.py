"""`python -m cmproxy.cli …`."""

from cmproxy.cli import main

main()
