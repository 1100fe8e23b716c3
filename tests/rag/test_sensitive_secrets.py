from rag.sensitive.secrets import (detect_api_key, detect_high_entropy, detect_password,
                                   detect_private_key)

PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I\n"
       "2yPB4Kz1UbL1c0F2ZbC/dFAKEKEYfake==\n-----END RSA PRIVATE KEY-----")


def texts(findings):
    return [f.text for f in findings]


def test_known_token_shapes():
    github = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    text = (f"aws AKIAIOSFODNN7EXAMPLE; gh {github}; openai sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t; "
            f"jwt {jwt}\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert texts(detect_api_key(text)) == [
        "AKIAIOSFODNN7EXAMPLE", github, "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", jwt,
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]


def test_pem_block_complete_and_truncated():
    assert texts(detect_private_key(f"key:\n{PEM}\nend")) == [PEM]
    truncated = PEM[:PEM.index("-----END")]
    [finding] = detect_private_key("key:\n" + truncated)
    assert finding.text == truncated.rstrip("\n")
    assert detect_private_key("-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----") == []


def test_passwords_next_to_labels_and_not_in_prose():
    text = "密码：Abc@12345，password=hunter2; pwd: 'p4ss' 口令为 qwe123. The secret is that we won."
    assert texts(detect_password(text)) == ["Abc@12345", "hunter2", "p4ss", "qwe123"]


def test_high_entropy_tokens_but_not_hashes_or_words():
    text = ("token Xk9aQ7pL2mN8vB4cR6tY1wZ3 commit 3f786850e387550fdab836ed7e6dc881de23001b "
            "word internationalization-considerations")
    assert texts(detect_high_entropy(text)) == ["Xk9aQ7pL2mN8vB4cR6tY1wZ3"]
