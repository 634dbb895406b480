"""The OpenSSH session a transfer runs: Ferry's options first, pinned host keys, the inventory's options after."""
import pytest

from ansible_collections.ferry.migrate.plugins.module_utils import _transport

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM26hMM0yMrAzz648ualv8U1g8nk39iLRzs7GEXVfbB0"


def option(argv, name):
    """The value OpenSSH takes for -o NAME: the first one given."""
    values = [argv[i + 1].split("=", 1)[1] for i, arg in enumerate(argv[:-1]) if arg == "-o" and argv[i + 1].startswith(name + "=")]
    return values[0] if values else None


def test_ferrys_options_come_before_the_inventorys_and_the_host_last():
    argv = _transport.ssh_argv("10.0.0.2", 2222, "ops", "ferry-receive", "/tmp/k", "/tmp/kh",
                               ["-o", "ProxyJump=ops@bastion", "-o", "UserKnownHostsFile=/elsewhere", "-o", "ControlMaster=auto"])
    assert argv[:2] == ["ssh", "-T"] and argv[-3:] == ["--", "10.0.0.2", "ferry-receive"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-l") + 1] == "ops"
    assert option(argv, "ProxyJump") == "ops@bastion"  # the jump host applies
    assert option(argv, "UserKnownHostsFile") == "/tmp/kh"  # the pins win over the inventory's file
    assert option(argv, "ControlMaster") == "no" and option(argv, "IdentitiesOnly") == "yes"
    assert option(argv, "HostKeyAlias") == _transport.PIN_ALIAS and option(argv, "StrictHostKeyChecking") == "yes"
    assert option(argv, "Compression") == "no"


def test_an_operators_known_hosts_file_is_looked_up_under_the_hosts_own_name():
    argv = _transport.ssh_argv("db2", 22, "root", "ferry-receive", "/k", "/root/.ssh/known_hosts", pinned=False)
    assert option(argv, "HostKeyAlias") is None and option(argv, "UserKnownHostsFile") == "/root/.ssh/known_hosts"


def test_pins_take_only_well_formed_keys():
    assert _transport.pin_lines([KEY, "ssh-ed25519 not/base64!", "garbage", KEY + " comment"]) == [
        "%s %s" % (_transport.PIN_ALIAS, KEY)] * 2


def base_params(**changes):
    params = dict(checkpoint_id="c1", target="10.0.0.2", port=22, user="root", source_address=None, source_port=22,
                  source_user="root", timeout=300)
    params.update(changes)
    return params


@pytest.mark.parametrize("changes, named", [
    ({"port": 0}, "port"), ({"source_port": 70000}, "source_port"), ({"user": "root -o ProxyCommand=x"}, "user"),
    ({"source_user": "-oProxyCommand=x"}, "source_user"), ({"target": "-oProxyCommand=x"}, "target"),
    ({"source_address": "a b"}, "source_address"), ({"checkpoint_id": "../x"}, "checkpoint_id"), ({"timeout": 0}, "timeout"),
])
def test_bad_connection_details_are_refused_naming_the_option(changes, named):
    problem = _transport.check_params(base_params(**changes))
    assert problem and problem.split()[0].strip("'") == named, problem


def test_good_connection_details_pass():
    assert _transport.check_params(base_params(user="ferry-ops.1", source_address="bastion.example.com")) is None


def test_a_login_that_fails_is_named_before_anything_is_sent(tmp_path):
    # A real OpenSSH client against an address where no sshd listens: the session never starts.
    channel = _transport.Channel("127.0.0.1", 9, "root", "ferry-receive", 5, private_key="not a key", host_keys=[KEY])
    with pytest.raises(_transport.TransportError, match="cannot reach 127.0.0.1: the target did not start the receiver"):
        channel.ready()


def test_a_link_session_ends_with_what_was_sent_last_delivered(tmp_path):
    # The session's program stands in for ssh and the forced command behind it: it answers as the
    # target does, then needs a moment after its input ends to deliver what it read. A relay finishing
    # a page link sends its last acknowledgement and closes at once; the session must not be killed
    # with that acknowledgement still inside it (the target would wait for it, then give up).
    delivered = tmp_path / "delivered"
    dialer = _transport.LinkDialer("c1", "127.0.0.1", 22, "root", "key", [KEY])
    dialer._argv = ["sh", "-c", "echo '{\"ready\": true}'; read header; echo '{\"link\": true}'; "
                    "cat > %s.part; sleep 0.5; mv %s.part %s" % (delivered, delivered, delivered)]
    session = dialer(5)
    session.sendall(b"the last acknowledgement")
    session.shutdown(2)
    session.close()
    dialer.close()
    assert delivered.read_bytes() == b"the last acknowledgement"
