"""`python -m meshmart_devstack run|migrate|seed`."""

from meshmart_devstack.launcher import main

if __name__ == "__main__":
    raise SystemExit(main())
