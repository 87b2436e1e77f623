from modelreg.cli.entry import main

raise SystemExit(main())
