package main

import (
	"net"
	"os/user"
	"strconv"
	"syscall"
)

func freePort() int {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func netDial(port int) (net.Conn, error) { return net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)) }

// postgresCredential runs pgbouncer as the postgres OS user when we are root (it
// refuses to run as root).
func postgresCredential() *syscall.Credential {
	u, err := user.Lookup("postgres")
	if err != nil || syscall.Geteuid() != 0 {
		return nil
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
