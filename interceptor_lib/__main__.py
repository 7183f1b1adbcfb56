from interceptor_lib.cli import main

raise SystemExit(main())
