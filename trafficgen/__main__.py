from trafficgen.cli.main import main

main()
