from cryoposes.cli import main

raise SystemExit(main())
