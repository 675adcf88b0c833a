from bridge.cli import main

if __name__ == "__main__":  # guarded: batch's worker processes import this module too
    raise SystemExit(main())
