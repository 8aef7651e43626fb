from gateway.server.cli import main

main()
